"""PAENet: pack many face tasks into one compact network without forgetting any of them."""
__version__ = "0.1.0"
