"""MIMIC-CXR report sectioning follows the official parser's rules."""

from helpers.official import NO_HEADER_REPORT, mimic_report
from relink.loaders.sections import (CUSTOM_INDICES, clean, normalise_name, report_sections, select_report,
                                     split_sections)


def test_sections_are_found_in_report_order():
    text = mimic_report(findings="Lungs clear.", impression="No acute process.")
    assert [name for name, _ in split_sections(text)] == [
        "preamble", "examination", "indication", "comparison", "findings", "impression"]


def test_default_text_is_findings_then_impression_with_whitespace_collapsed():
    text = mimic_report(findings="Lungs   are\n clear.", impression="No acute\tprocess.")
    assert select_report(text) == "Lungs are clear. No acute process."
    assert select_report(text, sections=("impression", "findings")) == "No acute process. Lungs are clear."
    assert select_report(text, sections=("impression",)) == "No acute process."


def test_impression_only_report_gives_the_impression():
    assert select_report(mimic_report(impression="Small effusion.")) == "Small effusion."


def test_requested_section_missing_falls_back_by_official_priority():
    text = mimic_report(findings="Cardiomegaly.")
    assert select_report(text, sections=("impression",)) == "Cardiomegaly."


def test_no_findings_or_impression_falls_back_to_last_paragraph():
    names = [n for n, _ in split_sections(NO_HEADER_REPORT)]
    assert names == ["full report", "last_paragraph"]
    assert select_report(NO_HEADER_REPORT) == "Heart size is normal. No pneumothorax."


def test_comparison_is_the_last_resort():
    text = "FINAL REPORT\n INDICATION:  Cough.\n COMPARISON:  Compared to prior, no change.\n"
    assert select_report(text) == "Compared to prior, no change."


def test_nothing_usable_gives_empty_text():
    assert select_report("                 FINAL REPORT\n") == ""
    # The official header pattern needs a newline and a space before the name.
    assert select_report("FINDINGS: not a header here") == ""


def test_header_names_are_normalised_like_the_official_parser():
    assert normalise_name("IMPRESSOIN") == "impression"
    assert normalise_name("CONCLUSION") == "impression"
    assert normalise_name("FINDINGS AND IMPRESSION") == "impression"
    assert normalise_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"
    assert normalise_name("REASON FOR EXAM") == "indication"
    assert normalise_name("WET READ") == "wet read"


def test_empty_title_section_is_dropped_and_last_findings_wins():
    text = ("FINAL REPORT\n CHEST, PA LATERAL:\n \n INDICATION:  Cough.\n \n"
            " FINDINGS:  First draft.\n \n FINDINGS:  Final words.\n")
    sections = report_sections(text)
    assert sections["findings"] == "Final words."
    assert [n for n, _ in split_sections(text)].count("findings") == 2  # the empty title one is gone


def test_next_header_search_resumes_after_the_header_line():
    # Official quirk: a header on the line right after an empty header is swallowed.
    text = "FINAL REPORT\n FINDINGS:\n IMPRESSION:  Clear.\n"
    assert [n for n, _ in split_sections(text)] == ["preamble", "findings"]
    assert select_report(text) == "IMPRESSION: Clear."


def test_custom_indices_override_the_parser():
    study = "s50525523"
    start, end = CUSTOM_INDICES[study]
    text = "".join(chr(ord("a") + i % 26) if i % 7 else " " for i in range(400))
    assert select_report(text, study) == clean(text[start:end])
    assert select_report(mimic_report(impression="Anything."), "s58235663") == ""  # (0, 0): no findings


def test_custom_section_name_is_used_as_the_impression():
    text = ("FINAL REPORT\n FINDINGS:  Lungs clear.\n \n"
            " RECOMMENDATION(S):  Follow-up CT advised.\n")
    assert select_report(text, "s50913680", sections=("impression",)) == "Follow-up CT advised."
    assert select_report(text, "s50913680") == "Lungs clear. Follow-up CT advised."
    assert select_report(text, "s50000000", sections=("impression",)) == "Lungs clear."
