from humpback.chat import messages_for
from humpback.prompts import render_backward, render_curation, template
from humpback.data.mixture import backward_rows, mixture_rows

BACKWARD_HEAD = ("Below is a candidate answer to a question or instruction from an user. Write the most likely "
                 "question to which the text below would be a great answer.")


def test_backward_prompt_exact():
    assert render_backward("Paris is the capital of France.") == BACKWARD_HEAD + "\n\nParis is the capital of France."


def test_curation_prompt_exact_ends():
    text = render_curation("What is {x}?", "It is {y}.")
    assert text.startswith("Below is an instruction from an user and a candidate answer. Evaluate whether or not")
    assert text.endswith('then write "Score: <rating>" in the last line.\n\nWhat is {x}?\nIt is {y}.')
    assert text.count("\n") == 10  # header, five scale lines, blank, request, blank, instruction, output
    assert "5: It means it is a perfect answer from an AI Assistant." in text


def test_curation_template_is_the_papers_table_1():
    lines = template("curate").split("\n")
    assert [line[:3] for line in lines[1:6]] == ["1: ", "2: ", "3: ", "4: ", "5: "]
    assert lines[-2:] == ["{instruction}", "{output}"]


def test_mixture_tags_exact():
    seed = [{"id": "s1", "instruction": "Hi?", "output": "Hello."}]
    curated = [{"candidate_id": "c1", "segment_id": "c1", "instruction": "Q?", "output": "Web text."}]
    rows = mixture_rows(seed, curated)
    assert rows == [
        {"id": "s1", "source": "seed", "messages": [
            {"role": "system", "content": "Answer in the style of an AI Assistant."},
            {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]},
        {"id": "c1", "source": "augmented", "messages": [
            {"role": "system", "content": "Answer with knowledge from web search."},
            {"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Web text."}]},
    ]


def test_backward_rows_flip_the_pair():
    rows = backward_rows([{"id": "s1", "instruction": "Hi?", "output": "Hello."}])
    assert rows == [{"id": "s1", "source": "seed", "messages": messages_for(BACKWARD_HEAD + "\n\nHello.", "Hi?")}]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "Hi?"}
