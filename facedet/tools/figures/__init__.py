"""The teaching figures of doc_images/, one module per idea; `python -m facedet.tools.figures`
(facedet/tools/figures/all.py) regenerates all of them.

    classifier        embedding strip, feature maps, framing (rung 1)
    grid              truth matrix, probability grids, 7 vs 14, touching faces (rung 3)
    detections        proposals before and after NMS (rungs 2, 4, 5)
    receptive_field   the receptive-field calculator and its plots
    bce               the seed's binary cross-entropy worked example
    focal             focal loss vs cross-entropy, and who pays the loss: SSD's mining vs focal (rung 6)
    pyramid           the input pixels one pyramid cell depends on, with and without FPN's top-down path (rung 6)
    priors            SSD priors at one cell, on a toy grid, and prior matching (rung 5)
    centernet         heatmap, peaks and boxes: targets or a trained model (rung 7)
    summaries         torchinfo tables of the seed-size models
    viola_jones       integral image, Haar feature types, first features, rejection per stage (rung 0)
"""
