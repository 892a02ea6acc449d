"""Personal data: the `pii` stage (scrub.py), its pattern recognizers (patterns.py), person-name rules
(names.py), `meta` scrubbing (meta.py) and identifying metadata in image/audio bytes (media_metadata.py)."""
