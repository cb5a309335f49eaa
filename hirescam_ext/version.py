"""Version of the hirescam-ext package (also the bundle version in configs/metadata.json)."""

__version__ = "0.1.0"
