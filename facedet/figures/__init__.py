"""The teaching figures of doc_images/, one module per idea; `python -m facedet.figures`
(facedet/figures/all.py) regenerates all of them.

    classifier        embedding strip, feature maps, framing (rung 1)
    grid              truth matrix, probability grids, 7 vs 14, touching faces (rung 3)
    detections        proposals before and after NMS (rungs 2, 4, 5)
    receptive_field   the receptive-field calculator and its plots
    bce               the seed's binary cross-entropy worked example
    priors            SSD priors at one cell, on a toy grid, and prior matching (rung 5)
    summaries         torchinfo tables of the seed-size models
    viola_jones       integral image, Haar feature types, first features, rejection per stage (rung 0)
"""
