"""Small data-writing helpers the tests share."""

import json


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


EN_WORDS = (
    "the a of and to in is that it was for on are with as they be at one have this from or had by word but what "
    "some we can out other were all there when up use your how said an each which do their time if will way about "
    "many then them write would like so these long make thing see two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now find any new work part "
    "take get place made live where after back little only round man year came show every good give our under "
    "name very through just form sentence great think say help low line differ turn cause much mean before move "
    "right old too same tell does set three want air well also play small end put home hand port large spell add "
    "even land here must big high such follow act why ask men change went light kind off need house picture try "
    "again animal point mother world near build self earth father"
).split()
DE_WORDS = (
    "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er hat "
    "dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor zur bis "
    "mehr durch man sein wurde sei hatte kann gegen vom können schon wenn habe seine ihre dann unter wir soll ich "
    "eines jahr zwei jahren diese dieser wieder keine seiner worden will zwischen immer was sagte gibt alle seit "
    "muss doch jetzt drei neue damit bereits da ab ihr sagt neuen"
).split()


def words_prose(words, seed: int, sentences: int = 10) -> str:
    """Made-up sentences of real words of one language: a language identifier knows them, the
    repetition filter does not fire."""
    import random

    rng = random.Random(seed)
    return " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(9, 14))).capitalize() + "."
                    for _ in range(sentences))


def english(seed: int, sentences: int = 10) -> str:
    return words_prose(EN_WORDS, seed, sentences)


def german(seed: int, sentences: int = 10) -> str:
    return words_prose(DE_WORDS, seed, sentences)


def write_warc(path, records):
    """A gzipped WARC file of ``(kind, uri, status, content_type, body bytes)`` records with warcio:
    kind "response" (HTTP headers from status and content_type) or "request"."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=str(path).endswith(".gz"))
        for kind, uri, status, content_type, body in records:
            if kind == "request":
                headers = StatusAndHeaders(f"GET {uri} HTTP/1.1", [("Host", "example.org")], is_http_request=True)
                record = writer.create_warc_record(uri, "request", payload=io.BytesIO(b""), http_headers=headers)
            else:
                fields = [("Content-Type", content_type)] if content_type else []
                headers = StatusAndHeaders(status, fields, protocol="HTTP/1.1")
                record = writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=headers)
            writer.write_record(record)
    return path
