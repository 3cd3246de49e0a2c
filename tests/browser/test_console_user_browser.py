"""A tenant's user in the web console, in headless Chromium against the running system: sign in, upload two
files (file input and drag and drop) and watch them reach `indexed`, ask and watch the answer stream, open a
citation's passage, see agent steps, sign out."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from browser.console import Console

pytestmark = pytest.mark.browser

LEAD = "Project Falcon is led by Dr. Maria Ortiz."
OFFICE = "Dr. Maria Ortiz works from the Lisbon office."
TWO_HOP = "Which office does the lead of Project Falcon work from?"
# Counts the renders of the answer while it streams (each token replaces the text) and whether the sources
# were already listed when the first one came.
WATCH_ANSWER = """
window.answerRenders = 0; window.sourcesBeforeAnswer = null;
new MutationObserver(() => {
  if (document.getElementById("answer").getAttribute("aria-busy") !== "true") return;
  window.answerRenders += 1;
  if (window.sourcesBeforeAnswer === null)
    window.sourcesBeforeAnswer = document.querySelectorAll("#sources li").length > 0;
}).observe(document.getElementById("answer"), {childList: true, characterData: true, subtree: true});
"""
DROP_FILE = """
const [name, text] = arguments;
const transfer = new DataTransfer();
transfer.items.add(new File([text], name, {type: "text/plain"}));
document.getElementById("drop-zone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
"""


def _ask(console: Console, question: str, agent: bool) -> None:
    console.open("chat.html")
    console.driver.execute_script(WATCH_ANSWER)
    console.find("#question").send_keys(question)
    if agent:
        console.find("#agent-mode").click()
    console.find("#ask-button").click()
    console.wait(lambda d: "Answer complete" in console.status() or "failed" in console.status(), timeout_s=90)
    assert "Answer complete" in console.status(), console.status()


def test_a_wrong_key_is_refused_at_sign_in(console: Console) -> None:
    console.open("index.html")
    console.find("#api-key").send_keys("not-a-key")
    console.find("#sign-in button[type=submit]").click()
    console.wait(lambda d: "refused" in console.status())
    assert console.driver.execute_script("return sessionStorage.length") == 0
    console.open("documents.html")  # no key: back to sign in
    console.wait(lambda d: d.current_url.endswith("index.html"))
    console.screenshot("sign-in")


def test_two_files_are_uploaded_and_reach_indexed(console: Console, tmp_path: Path) -> None:
    console.sign_in(api_key="dev-key")
    assert console.driver.execute_script("return sessionStorage.getItem('ragstream.apiKey')") == "dev-key"
    suffix = uuid.uuid4().hex[:6]
    charter = tmp_path / f"falcon-charter-{suffix}.txt"
    charter.write_text(LEAD)
    console.find("#file-input").send_keys(str(charter))
    console.driver.execute_script(DROP_FILE, f"staff-ortiz-{suffix}.md", OFFICE)
    rows = f"#uploads li[data-file$='-{suffix}.txt'], #uploads li[data-file$='-{suffix}.md']"
    console.wait(lambda d: len(console.find_all(rows)) == 2)
    console.wait(lambda d: all(r.get_attribute("data-status") == "indexed" for r in console.find_all(rows)), 120)
    progress = [
        float(r.find_element("css selector", "progress").get_attribute("value")) for r in console.find_all(rows)
    ]
    assert progress == [1.0, 1.0]
    console.wait(lambda d: suffix in console.text_of("#document-list"))
    console.find("#search-box").send_keys(suffix)
    listed = console.find_all("#document-list tbody tr")
    assert len(listed) == 2 and all("indexed" in row.text for row in listed)
    console.screenshot("documents")


def test_the_answer_streams_and_a_citation_opens_its_passage(console: Console) -> None:
    console.sign_in(api_key="dev-key")
    _ask(console, "Who leads Project Falcon?", agent=False)
    # Text rendered while the answer was still forming (aria-busy): streamed, not painted at `done`. The
    # extractive answer's tokens may travel as one fragment, so one render while busy is all that is certain.
    assert console.driver.execute_script("return window.answerRenders") >= 1
    assert console.driver.execute_script("return window.sourcesBeforeAnswer") is True
    assert "Maria Ortiz" in console.text_of("#answer")
    citation = console.visible("#answer button.citation")
    console.screenshot("chat")
    citation.click()
    dialog = console.visible("#passage")
    assert "Maria Ortiz" in console.text_of("#passage-text")
    assert console.text_of("#passage-title").startswith(citation.text)
    console.screenshot("chat-passage")
    console.find("#passage-close").click()
    console.wait(lambda d: not dialog.is_displayed())


def test_agent_mode_shows_its_steps(console: Console) -> None:
    console.sign_in(api_key="dev-key")
    _ask(console, TWO_HOP, agent=True)
    steps = console.find_all("#steps li")
    assert len(steps) >= 2, [step.text for step in steps]
    assert steps[0].text.startswith("Step 1:") and TWO_HOP in steps[0].text
    assert "Lisbon" in console.text_of("#answer")
    assert "agent:" in console.status()
    console.screenshot("chat-agent")


def test_sign_out_forgets_the_keys(console: Console) -> None:
    console.sign_in(api_key="dev-key", admin_token="admin-token-for-e2e-tests-32-chars-min")
    stored = console.driver.execute_script("return JSON.stringify(Object.assign({}, sessionStorage))")
    assert "dev-key" in json.loads(stored).values()
    console.find("#sign-out").click()
    console.wait(lambda d: d.current_url.endswith("index.html"))
    assert console.driver.execute_script("return sessionStorage.length") == 0
    assert console.driver.execute_script("return localStorage.length") == 0
