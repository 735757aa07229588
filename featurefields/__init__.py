"""featurefields: lift 2D foundation-model features into 3D Gaussian feature fields and query them."""
__version__ = "0.1.0"
