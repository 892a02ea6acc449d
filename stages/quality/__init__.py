"""Quality filtering: the Gopher, C4 and FineWeb rule sets (one stage per module), the rule framework they share
(rules.py) and the tokenizer that makes them agree with datatrove (tokenizer.py)."""
