"""facecloak: protect face photos from face recognition by feature embedding."""
__version__ = "0.2.0"
