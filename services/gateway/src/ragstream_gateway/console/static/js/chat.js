// Ask a question and watch the answer form: agent steps, then sources, then tokens, then `done` with citations.
import { streamQuery } from "./api.js";
import { byId, el } from "./dom.js";
import { announce, page, reportError } from "./layout.js";

const CITATION = /\[(\d+)\]/g;
let sources = [];
let citations = [];
// [n] -> the source it names, fixed at first sight. The extractive answer numbers its sources by first use (in
// agent mode too), so the `sources` event's order is not the answer's: the sentence a marker closes is quoted
// from the source it names, so that source is the one whose text holds it. An LLM's answer quotes no sentence
// whole and numbers sources in the `sources` event's order. `done`'s citations settle every number.
const resolved = new Map();

const flat = (text) => (text || "").split(/\s+/).filter(Boolean).join(" ");

// The text a marker at `at` closes, back to the previous marker: in an extractive answer, one quoted sentence.
function sentenceBefore(text, at) {
  return flat(text.slice(text.lastIndexOf("]", at - 1) + 1, at).replace(/^[\s.!?;:,]+/, ""));
}

function sourceFor(index, sentence) {
  if (!resolved.has(index)) {
    const quoted = sentence.length > 12 ? sources.find((s) => flat(s.text).includes(sentence)) : undefined;
    const source = quoted || sources[index - 1];
    if (source) resolved.set(index, source);
  }
  return resolved.get(index);
}

function settle(final) {
  resolved.clear();
  for (const cited of final) {
    const source = sources.find((s) => s.chunk_id === cited.chunk_id);
    resolved.set(cited.index, source || cited);
  }
}

function openPassage(index) {
  const cited = citations.find((c) => c.index === index);
  const source = resolved.get(index);
  const title = cited?.title || source?.title || "(untitled)";
  byId("passage-title").textContent = `[${index}] ${title}`;
  byId("passage-document").textContent = `Document ${cited?.document_id || source?.document_id || "unknown"}`;
  byId("passage-text").textContent = cited?.snippet || source?.text || "The passage is not available.";
  byId("passage").showModal();
}

// The answer text with each [n] that names a known source as a button opening that passage; while the answer
// streams, a marker resolves as it completes (see `resolved`).
function renderAnswer(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    const index = Number(match[1]);
    if (!sourceFor(index, sentenceBefore(text, match.index))) continue;
    parts.push(text.slice(last, match.index));
    parts.push(el("button", {
      type: "button", class: "citation", "data-citation": index,
      "aria-label": `Citation ${index}: open the passage`, onclick: () => openPassage(index),
    }, `[${index}]`));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  byId("answer").replaceChildren(...parts);
}

function showStep(step) {
  byId("steps-section").hidden = false;
  byId("steps").append(el("li", { class: "step" },
    el("strong", {}, `Step ${step.step}: `), `searched “${step.query}”`,
    step.reason ? ` (${step.reason})` : "", ` → ${step.sources.length} sources, ${step.new_sources} new`));
}

function showSource(source) {
  byId("passage-title").textContent = source.title || "(untitled)";
  byId("passage-document").textContent = `Document ${source.document_id}`;
  byId("passage-text").textContent = source.text || "The passage is not available.";
  byId("passage").showModal();
}

function showSources(results) {
  sources = results;
  // A listed source opens itself: its place in the list is not an answer's [n].
  byId("sources").replaceChildren(...results.map((r) => el("li", { class: "source" },
    el("button", { type: "button", class: "link", onclick: () => showSource(r) }, r.title || r.document_id),
    el("span", { class: "hint" }, ` score ${r.score.toFixed(3)}`))));
}

function handler(state) {
  return (name, data) => {
    if (name === "step") showStep(data);
    else if (name === "sources") showSources(data.results);
    else if (name === "token") {
      state.text += data.text;
      renderAnswer(state.text);
    } else if (name === "done") {
      citations = data.citations || [];
      settle(citations);
      state.text = data.answer;
      renderAnswer(data.no_answer && !data.answer ? "No answer in the indexed documents." : data.answer);
      const exit = data.exit_reason ? ` (agent: ${data.exit_reason})` : "";
      announce(`Answer complete${exit}.`);
    } else if (name === "error") announce(`The query failed: ${data.detail}`, "error");
  };
}

async function ask(event) {
  event.preventDefault();
  const agent = byId("agent-mode").checked;
  sources = [];
  citations = [];
  resolved.clear();
  byId("steps").replaceChildren();
  byId("steps-section").hidden = !agent;
  byId("sources").replaceChildren();
  byId("answer").replaceChildren();
  const answer = byId("answer");
  const button = byId("ask-button");
  answer.setAttribute("aria-busy", "true");
  button.disabled = true;
  announce("Asking…");
  try {
    const body = { question: byId("question").value.trim(), mode: agent ? "agent" : "answer" };
    await streamQuery(body, handler({ text: "" }));
  } catch (error) {
    reportError(error);
  } finally {
    answer.setAttribute("aria-busy", "false");
    button.disabled = false;
  }
}

page(() => {
  byId("ask").addEventListener("submit", ask);
});
