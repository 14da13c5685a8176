"""Imports every module that registers a pretrained-model record (one record per model)."""
from . import arcface, dcgan, dlib_resnet, facenet, hiding, lpips_nets, retinaface, sface, stylegan  # noqa: F401
