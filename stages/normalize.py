"""`normalize`: Unicode NFC (or NFKC), control-character removal and whitespace cleanup.

Every later stage (language ID, quality rules, dedup hashing) sees the same canonical text, so two documents that
differ only in CRLFs or stray control bytes are treated alike. Pure Arrow compute kernels: no per-row Python.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from refinery.stage import NonNegInt, Stage, StageParams, StageResult, register

_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x{200b}\x{feff}]"
_HSPACE = r"[ \t\x{00a0}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]+"


class NormalizeParams(StageParams):
    form: Literal["NFC", "NFKC", "none"] = "NFC"
    remove_control: bool = True
    collapse_whitespace: bool = True
    max_blank_lines: NonNegInt = 1


@register
class Normalize(Stage[NormalizeParams]):
    name = "normalize"

    def process(self, batch: pa.Table) -> StageResult:
        p = self.params
        text = batch["text"]
        if p.form != "none":
            text = pc.utf8_normalize(text, p.form)
        text = pc.replace_substring_regex(text, r"\r\n?", "\n")
        if p.remove_control:
            text = pc.replace_substring_regex(text, _CONTROL, "")
        if p.collapse_whitespace:
            text = pc.replace_substring_regex(text, _HSPACE, " ")
            text = pc.replace_substring_regex(text, r" ?\n ?", "\n")
            text = pc.replace_substring_regex(
                text, "\n{" + str(p.max_blank_lines + 2) + ",}", "\n" * (p.max_blank_lines + 1)
            )
            text = pc.utf8_trim_whitespace(text)
        idx = batch.schema.get_field_index("text")
        return batch.set_column(
            idx, batch.schema.field("text"), text.cast(batch.schema.field("text").type)
        ), None
