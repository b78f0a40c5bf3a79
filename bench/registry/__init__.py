"""Registration: component cards (YAML) and the catalogue of codecs, datasets, metrics, segmenters."""
