"""fashion-edge: six-attribute fashion product recognition, trained with Keras, served at the edge."""

__version__ = "0.1.0"

HEADS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season")
SHORT_HEADS = {  # column titles for tables
    "gender": "gender",
    "masterCategory": "master",
    "subCategory": "sub",
    "articleType": "article",
    "baseColour": "colour",
    "season": "season",
}
