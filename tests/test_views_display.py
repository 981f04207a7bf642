"""How tables and charts read: file names of downloads, headers and numbers, colours per GPU."""

from __future__ import annotations

from sweep.analysis.selection import ANY
from sweep.analysis.table import download_name


def test_download_name_says_what_the_file_holds():
    fvals = {"model": "roberta-large", "seq_len": "512", "precision": "fp16-mixed", "task": ANY}
    assert download_name("answer", fvals, ["vs-A100", ""]) == (
        "answer_roberta-large_seq512_fp16-mixed_vs-A100"
    )
    any_model = {"model": ANY, "seq_len": ANY, "precision": ANY, "attention": "sdpa"}
    assert download_name("trials", any_model, ["search-H200 / x"]) == (
        "trials_all-models_attention-sdpa_search-H200-x"
    )
