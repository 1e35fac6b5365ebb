// Writes reference token ids and chat-template renderings for chainrl's tokenizer tests, using
// @lenml/tokenizers (an independent JavaScript implementation of Hugging Face tokenizers).
// Usage: node scripts/tokenizer_reference.mjs ASSETS_DIR   (run by scripts/fetch_test_assets.sh)
// Output (generated, never committed): ASSETS_DIR/<model>/reference_ids.json and
// ASSETS_DIR/<model>/reference_chat.json for each model directory prepared by the fetch script.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const assets = process.argv[2];
if (!assets) {
  console.error("usage: node tokenizer_reference.mjs ASSETS_DIR");
  process.exit(2);
}
const require = createRequire(path.join(assets, "npm", "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");
// Hugging Face's own JavaScript Jinja engine (the one transformers.js renders chat templates with);
// the copy bundled in @lenml/tokenizers is too old to parse Qwen3's template.
const { Template } = require("@huggingface/jinja");
const scriptDir = path.dirname(new URL(import.meta.url).pathname);

// The corpus: every case is encoded by each model; the C++ test compares ids case by case.
const corpus = [
  ["empty", ""],
  ["prose", "The quick brown fox jumps over the lazy dog. It was 3:45pm, and—surprisingly—nobody noticed."],
  ["code", "def f(x):\n\tif x  >  0:\n\t\treturn x ** 2   # square\n    else:\n        return -x\n\n\nprint(f(  12 ))\n"],
  ["code_cpp", "int main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;  // double\n  return 0;\n}\n"],
  ["digits", "1234567890 0.000123 3.14159265358979 1e-9 -42 +7 1,000,000 2024-01-31"],
  ["long_number", "9".repeat(257) + " " + "1234567890".repeat(20)],
  ["cjk", "我爱自然语言处理。日本語のテキストも大丈夫です。한국어 문장도 있습니다."],
  ["emoji", "Hi 👋🏽! Family: 👨‍👩‍👧‍👦 flags 🇯🇵🇫🇷 hearts ❤️💙 🤖"],
  ["combining", "Cafe\u0301 vs Café, n\u0303 vs ñ, A\u030A vs Å, e\u0301\u0302\u0323 stacked; Ω Ω (ohm sign)"],
  ["contractions", "don't I'LL we've You'RE it's they'd she'S WE'VE can't I'm"],
  ["specials_qwen", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi<|endoftext|>"],
  ["specials_llama", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"],
  ["special_partial", "<|im_start <|im_end| |endoftext|> <think>x</think>"],
  ["whitespace_edges", "   leading and trailing   "],
  ["newlines", "a\n\n\nb\r\n\r\nc\n \n  \n\t\nd\n\n"],
  ["only_spaces", "     "],
  ["only_newlines", "\n\n\n\n"],
  ["mixed_scripts", "Привет мир! مرحبا بالعالم नमस्ते दुनिया Γειά σου κόσμε שלום עולם ไทย"],
  ["punctuation", "!!!??? ... --- ((()))[[]]{{}} @#$%^&*_+=|\\/~`'\"<>"],
  ["urls", "See https://example.com/a/b?c=1&d=2#frag or mailto:someone@example.org."],
  ["math", "∑_{i=1}^{n} x_i² ≤ √(n·∑x_i²) — ∀ε>0 ∃δ>0; ½ ⅓ ① ⅷ"],
  ["json", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\\n\"}}"],
  ["apostrophes", "’s ‘quoted’ 's 'S 'Re 't"],
  ["long_digits_100k", "7".repeat(100000)],
  ["long_spaces_100k", " ".repeat(100000) + "x"],
  ["long_word", "a".repeat(5000) + "b".repeat(3000)],
];

// Chat conversations rendered by every template, with and without add_generation_prompt.
const conversations = [
  ["user_only", [{ role: "user", content: "What is 2+2?" }]],
  ["system_user", [
    { role: "system", content: "You are a careful assistant." },
    { role: "user", content: "Hello!" },
  ]],
  ["multi_turn", [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Name a prime." },
    { role: "assistant", content: "7" },
    { role: "user", content: "Another one, please." },
  ]],
  ["assistant_last", [
    { role: "user", content: "Say hi." },
    { role: "assistant", content: "Hi!" },
  ]],
  ["thinking", [
    { role: "user", content: "Compute 3*4." },
    { role: "assistant", content: "<think>\n3*4 = 12\n</think>\n\nThe answer is 12." },
    { role: "user", content: "And 5*6?" },
    { role: "assistant", content: "<think>5*6=30</think>30" },
  ]],
  ["whitespace", [
    { role: "system", content: "  padded system  \n" },
    { role: "user", content: "\n  spaced user\t" },
  ]],
  ["unicode", [{ role: "user", content: "日本語 👋 \"quotes\" and \\backslash\\" }]],
  ["tools", [
    { role: "system", content: "You can call tools." },
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [
      { type: "function", function: { name: "get_weather", arguments: { city: "Paris", unit: "°C" } } }] },
    { role: "tool", content: "{\"temp\": 18}" },
    { role: "assistant", content: "It is 18 °C." },
  ], [{ tools: [{ type: "function", function: { name: "get_weather", description: "Current weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }] }]],
];

function loadTokenizer(dir) {
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

function referenceIds(tok) {
  const cases = [];
  for (const [name, text] of corpus) {
    const ids = tok.encode(text, { add_special_tokens: false });
    const idsSpecial = tok.encode(text, { add_special_tokens: true });
    const decode = (skip) => (ids.length === 0 ? "" :
      tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }));
    const decoded = decode(false);
    const decodedSkip = decode(true);
    cases.push({ name, text, ids, ids_add_special: idsSpecial, decoded, decoded_skip_special: decodedSkip });
  }
  return cases;
}

// Renders like apply_chat_template(tokenize=False): the special tokens of tokenizer_config.json
// are in the context, then the extra keyword arguments.
function specialTokens(config) {
  const out = {};
  for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const v = config[k];
    if (typeof v === "string") out[k] = v;
    else if (v && typeof v === "object" && typeof v.content === "string") out[k] = v.content;
  }
  return out;
}

function referenceChat(templateText, config) {
  const template = new Template(templateText);
  const out = [];
  for (const [name, messages, extraContexts] of conversations) {
    for (const gen of [false, true]) {
      const extras = extraContexts ?? [{}];
      if (name === "thinking" || name === "user_only") extras.push({ enable_thinking: false });
      for (const extra of extras) {
        let rendered = null;
        let error = null;
        try {
          rendered = template.render({ messages, add_generation_prompt: gen, ...specialTokens(config), ...extra });
        } catch (e) {
          error = String(e && e.message ? e.message : e);
        }
        out.push({ name, messages, add_generation_prompt: gen, extra_context: extra, rendered, error });
      }
    }
  }
  return out;
}

const models = fs.readdirSync(assets).filter((d) => fs.existsSync(path.join(assets, d, "tokenizer.json")));
for (const model of models) {
  const dir = path.join(assets, model);
  const tok = loadTokenizer(dir);
  const t0 = Date.now();
  fs.writeFileSync(path.join(dir, "reference_ids.json"), JSON.stringify({ generated_by: "scripts/tokenizer_reference.mjs", cases: referenceIds(tok) }));
  const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const templates = { own: config.chat_template };
  if (model.startsWith("qwen")) {
    templates.qwen2_5 = fs.readFileSync(path.join(scriptDir, "chat_template_qwen2_5.jinja"), "utf8");
  }
  const chat = {};
  for (const [tname, text] of Object.entries(templates)) {
    chat[tname] = { template: text, cases: referenceChat(text, config) };
  }
  fs.writeFileSync(path.join(dir, "reference_chat.json"), JSON.stringify({ generated_by: "scripts/tokenizer_reference.mjs", templates: chat }));
  console.log(`${model}: ${corpus.length} corpus cases, chat templates [${Object.keys(chat).join(", ")}] (${Date.now() - t0} ms)`);
}
