import pytest

from humpback.config import AugmentConfig
from humpback.data.instructions import clean_instruction, is_generic

SEGMENT = ("The with statement wraps the execution of a block with methods defined by a context manager. "
           "This allows common try, except and finally usage patterns to be encapsulated for reuse.")
CFG = AugmentConfig()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("How does Python's with statement work?", ("How does Python's with statement work?", "ok")),
        ("  Question: What is a context manager?\n", ("What is a context manager?", "ok")),
        ('"Explain the with statement."', ("Explain the with statement.", "ok")),
        ("", ("", "empty")),
        ("  ?! ", ("?!", "empty")),
        ("Below is a candidate answer to a question or instruction from an user.", None),
        ("The with statement wraps the execution of a block with methods defined by a context manager.", None),
        ("what what what what what what what what what what what what", None),
        ("x" * 2001, None),
    ],
)
def test_clean_instruction(raw, expected):
    got = clean_instruction(raw, SEGMENT, CFG)
    if expected is not None:
        assert got == expected
    else:
        status = got[1]
        wanted = {"B": "echo", "T": "echo", "w": "degenerate", "x": "degenerate"}[raw[0]]
        assert status == wanted


def test_generic_instructions_are_flagged():
    assert is_generic("Write an article about Python decorators.")
    assert is_generic("Please write a blog post on tea")
    assert not is_generic("How do I write a decorator that caches results?")
