"""reprise: regenerate the Mazumder-lab efficient-ML papers from declarative rules."""
__version__ = "0.1.0"
