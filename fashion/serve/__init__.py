"""fashion.serve: serve a bundle on NVIDIA Triton Inference Server (through PyTriton) with dynamic batching.

``fashion-serve BUNDLE`` starts the server; ``fashion-predict --server URL[,URL...]`` and any KServe v2
client (tritonclient, curl) talk to it. The model and tensor names are in :mod:`fashion.runtime.remote`.
PyTriton itself is imported only when a server starts (install the ``serve`` extra).
"""
