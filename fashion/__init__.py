"""fashion-edge: six-attribute fashion product recognition, trained with Keras, served at the edge."""

__version__ = "0.1.0"

HEADS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season")
