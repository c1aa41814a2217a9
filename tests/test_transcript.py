"""Transcripts: .srt / .vtt subtitles, .txt, plain strings, and the files we refuse."""

from __future__ import annotations

import pytest

from emofusion.transcript import TranscriptError, TranscriptSegment, from_text, parse_subtitles, read_transcript

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Hello</i> there,
how are you?

2
01:02:03,045 --> 01:02:04,5
{\\an8}I am <b>fine</b>.

3
00:00:10,000 --> 00:00:11,000
   

"""

VTT = """WEBVTT
Kind: captions

NOTE this block is a comment

intro
00:01.250 --> 00:02.000 align:start position:10%
<v Alice>Good <c.loud>morning</c></v>

00:00:03.000 --> 00:00:04.123
first line
second line
"""


def write(tmp_path, name: str, content: str | bytes):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_srt_cues_times_and_text(tmp_path):
    segs = read_transcript(write(tmp_path, "subs.srt", SRT))
    # the third cue has only blank text and is dropped
    assert segs == [
        TranscriptSegment(1.0, 2.5, "Hello there, how are you?"),
        TranscriptSegment(3723.045, 3724.5, "I am fine."),
    ]


def test_srt_with_crlf_and_bom(tmp_path):
    raw = "\ufeff" + SRT.replace("\n", "\r\n")
    segs = read_transcript(write(tmp_path, "win.SRT", raw))  # suffix case does not matter
    assert [s.text for s in segs] == ["Hello there, how are you?", "I am fine."]
    assert segs[0].start == 1.0 and segs[0].end == 2.5


def test_vtt_cues_without_hours_dot_millis_and_tags(tmp_path):
    segs = read_transcript(write(tmp_path, "subs.vtt", VTT))
    assert len(segs) == 2
    assert segs[0].start == pytest.approx(1.25) and segs[0].end == pytest.approx(2.0)
    assert segs[0].text == "Good morning"  # voice and class tags removed
    assert segs[1].start == pytest.approx(3.0) and segs[1].end == pytest.approx(4.123)
    assert segs[1].text == "first line second line"  # multi-line cue joined


def test_vtt_and_srt_agree_on_the_same_cues():
    srt = "1\n00:00:02,500 --> 00:00:03,500\nWhat a day\n"
    vtt = "WEBVTT\n\n00:00:02.500 --> 00:00:03.500\nWhat a day\n"
    assert parse_subtitles(srt) == parse_subtitles(vtt) == [TranscriptSegment(2.5, 3.5, "What a day")]


def test_cue_ending_before_it_starts_is_an_error():
    with pytest.raises(TranscriptError, match="ends before it starts"):
        parse_subtitles("1\n00:00:05,000 --> 00:00:04,000\nbackwards\n")


def test_subtitles_without_cues_are_an_error(tmp_path):
    with pytest.raises(TranscriptError, match="no subtitle cues"):
        read_transcript(write(tmp_path, "prose.srt", "just some words\nno timing at all\n"))


def test_txt_applies_to_the_whole_media(tmp_path):
    segs = read_transcript(write(tmp_path, "t.txt", "  I am   so\nhappy today.\n\n"))
    assert segs == [TranscriptSegment(0.0, None, "I am so happy today.")]


def test_from_text_normalises_whitespace_and_rejects_empty():
    assert from_text("hello\t world\n") == [TranscriptSegment(0.0, None, "hello world")]
    with pytest.raises(TranscriptError, match="empty"):
        from_text(" \n\t ")


@pytest.mark.parametrize("name", ["empty.txt", "empty.srt", "empty.vtt"])
def test_empty_file(tmp_path, name):
    with pytest.raises(TranscriptError) as info:
        read_transcript(write(tmp_path, name, ""))
    assert "\n" not in str(info.value) and str(info.value)


@pytest.mark.parametrize("name", ["notes.docx", "subs.ass", "noext"])
def test_wrong_suffix(tmp_path, name):
    p = write(tmp_path, name, "1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    with pytest.raises(TranscriptError, match="unsupported transcript format"):
        read_transcript(p)


def test_binary_content(tmp_path):
    p = write(tmp_path, "blob.srt", b"\x00\x01\x02PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(TranscriptError, match="binary"):
        read_transcript(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TranscriptError, match="no such file"):
        read_transcript(tmp_path / "missing.srt")
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(TranscriptError, match="not a file"):
        read_transcript(tmp_path / "dir.txt")


def test_non_utf8_text_is_still_read(tmp_path):
    p = write(tmp_path, "latin.txt", "caf\xe9 cr\xe8me".encode("cp1252"))
    assert read_transcript(p)[0].text == "café crème"
