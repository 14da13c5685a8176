"""Evaluation: protocols (ASR, Rank-k, CMC), image-quality metrics, image-processing attacks
and baseline de-identification methods (paper sections 4.3, 4.8, 4.9).

Submodules are imported on demand so that, e.g., the protocol maths needs only numpy.
"""
