"""The tools around the library: they measure it and draw it, and nothing in the library imports them.

    benchmark     python -m facedet.tools.benchmark     the ladder, the shipped detector and OpenCV's
                                                        Haar cascade on one data set: AP, recall, ms/image
    bench_speed   python -m facedet.tools.bench_speed   img/s and memory per model, NMS vs OpenCV,
                                                        loader img/s, one photo's latency per rung
    opencv_haar   OpenCV's Haar cascade scored like a rung (the benchmarks' classic baseline)
    figures/      python -m facedet.tools.figures       every figure of doc_images/

The user commands (train, infer, evaluate, calibrate, export) stay at the package's top.
"""
