// A Jinja-subset interpreter for chat templates: lexer (with trim_blocks/lstrip_blocks and
// whitespace control), recursive-descent parser to an AST, and a tree-walking renderer whose
// values follow Python's semantics (truthiness, str(), slicing, json.dumps for tojson).
// Errors inside this file travel as a private exception and become a Status at the API edge.
#include "model/chat_template.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include "core/json_file.h"

namespace chainrl {
namespace {

using ojson = nlohmann::ordered_json;

struct TemplateError {
  size_t pos;
  std::string message;
};
[[noreturn]] void Fail(size_t pos, std::string msg) { throw TemplateError{pos, std::move(msg)}; }

// Nesting of blocks, expressions and macro calls that no real chat template comes near (they nest
// fewer than 10 levels). The parser and the renderer recurse once per level, so a template nested
// tens of thousands of levels deep would overflow the stack.
constexpr int kMaxNesting = 256;

// One more level of `what` (e.g. "expression") for the guard's lifetime; fails at `pos` past
// kMaxNesting.
class Nest {
 public:
  Nest(int* depth, size_t pos, const char* what) : depth_(depth) {
    if (++*depth_ > kMaxNesting)
      Fail(pos,
           std::string(what) + " nested deeper than " + std::to_string(kMaxNesting) + " levels");
  }
  ~Nest() { --*depth_; }
  Nest(const Nest&) = delete;
  Nest& operator=(const Nest&) = delete;

 private:
  int* depth_;
};

// ---- Values -------------------------------------------------------------------------------------

struct Node;
struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion-ordered, like Python dicts

struct Macro {
  std::vector<std::string> params;
  std::vector<const Node*> defaults;  // nullptr when none
  const Node* body;
};

struct Value {
  enum Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kMacro,
    kBuiltin
  };
  Kind k = kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // kString; builtin name for kBuiltin; undefined variable name for kUndefined
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // kDict and kNamespace (shared: namespaces are mutable)
  std::shared_ptr<const Macro> macro;
  std::shared_ptr<Value> self;  // bound object for methods (kBuiltin "str.strip", ...)
  // Lists, dicts and namespaces nested in this value, itself included (0 for a scalar), and
  // whether a namespace is among them: printing, comparing and freeing values recurse, so the
  // renderer bounds both (see CheckValue). A namespace's attributes may change after it is put
  // in a list; they hold no namespace and are bounded when set, so the depth stays bounded.
  int depth = 0;
  bool holds_namespace = false;

  static Value None() {
    Value v;
    v.k = kNone;
    return v;
  }
  static Value Bool(bool x) {
    Value v;
    v.k = kBool;
    v.b = x;
    return v;
  }
  static Value Int(int64_t x) {
    Value v;
    v.k = kInt;
    v.i = x;
    return v;
  }
  static Value Float(double x) {
    Value v;
    v.k = kFloat;
    v.f = x;
    return v;
  }
  static Value Str(std::string x) {
    Value v;
    v.k = kString;
    v.s = std::move(x);
    return v;
  }
  static Value MakeList(List l = {}) {
    Value v;
    v.k = kList;
    v.list = std::make_shared<List>(std::move(l));
    v.Measure();
    return v;
  }
  static Value MakeDict(Dict d = {}) {
    Value v;
    v.k = kDict;
    v.dict = std::make_shared<Dict>(std::move(d));
    v.Measure();
    return v;
  }
  // Sets depth and holds_namespace from the elements.
  void Measure() {
    depth = 0;
    holds_namespace = false;
    auto note = [&](const Value& x) {
      depth = std::max(depth, x.depth);
      holds_namespace = holds_namespace || x.holds_namespace || x.k == kNamespace;
    };
    if (list)
      for (const Value& x : *list) note(x);
    if (dict)
      for (const auto& kv : *dict) note(kv.second);
    ++depth;
  }
  static Value Undefined(std::string name) {
    Value v;
    v.s = std::move(name);
    return v;
  }

  bool is_number() const { return k == kInt || k == kFloat || k == kBool; }
  double num() const { return k == kFloat ? f : k == kInt ? static_cast<double>(i) : (b ? 1 : 0); }
  const Value* Get(const std::string& key) const {
    if (!dict) return nullptr;
    for (const auto& [kk, vv] : *dict)
      if (kk == key) return &vv;
    return nullptr;
  }
};

const char* KindName(const Value& v) {
  switch (v.k) {
    case Value::kUndefined:
      return "undefined";
    case Value::kNone:
      return "none";
    case Value::kBool:
      return "bool";
    case Value::kInt:
      return "int";
    case Value::kFloat:
      return "float";
    case Value::kString:
      return "string";
    case Value::kList:
      return "list";
    case Value::kDict:
      return "dict";
    case Value::kNamespace:
      return "namespace";
    case Value::kMacro:
      return "macro";
    case Value::kBuiltin:
      return "function";
  }
  return "?";
}

Value FromJson(const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null:
      return Value::None();
    case ojson::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case ojson::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case ojson::value_t::number_unsigned:
      return Value::Int(static_cast<int64_t>(j.get<uint64_t>()));
    case ojson::value_t::number_float:
      return Value::Float(j.get<double>());
    case ojson::value_t::string:
      return Value::Str(j.get<std::string>());
    case ojson::value_t::array: {
      List l;
      for (const auto& e : j) l.push_back(FromJson(e));
      return Value::MakeList(std::move(l));
    }
    case ojson::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), FromJson(it.value()));
      return Value::MakeDict(std::move(d));
    }
    default:
      return Value::None();
  }
}

bool Truthy(const Value& v) {
  switch (v.k) {
    case Value::kUndefined:
    case Value::kNone:
      return false;
    case Value::kBool:
      return v.b;
    case Value::kInt:
      return v.i != 0;
    case Value::kFloat:
      return v.f != 0;
    case Value::kString:
      return !v.s.empty();
    case Value::kList:
      return !v.list->empty();
    case Value::kDict:
      return !v.dict->empty();
    default:
      return true;
  }
}

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string PyRepr(const Value& v);
// Python's str() of a value, as Jinja prints it.
std::string PyStr(const Value& v) {
  switch (v.k) {
    case Value::kUndefined:
      return "";
    case Value::kNone:
      return "None";
    case Value::kBool:
      return v.b ? "True" : "False";
    case Value::kInt:
      return std::to_string(v.i);
    case Value::kFloat:
      return FloatRepr(v.f);
    case Value::kString:
      return v.s;
    default:
      return PyRepr(v);
  }
}
std::string PyRepr(const Value& v) {
  switch (v.k) {
    case Value::kString: {
      bool dq = v.s.find('\'') != std::string::npos && v.s.find('"') == std::string::npos;
      char q = dq ? '"' : '\'';
      std::string out(1, q);
      for (char c : v.s) {
        if (c == '\\')
          out += "\\\\";
        else if (c == q) {
          out += '\\';
          out += c;
        } else if (c == '\n')
          out += "\\n";
        else if (c == '\t')
          out += "\\t";
        else if (c == '\r')
          out += "\\r";
        else
          out += c;
      }
      return out + q;
    }
    case Value::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.list->size(); ++i) out += (i ? ", " : "") + PyRepr((*v.list)[i]);
      return out + "]";
    }
    case Value::kDict:
    case Value::kNamespace: {
      std::string out = v.k == Value::kNamespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, x] : *v.dict) {
        out += (first ? "" : ", ") + PyRepr(Value::Str(k)) + ": " + PyRepr(x);
        first = false;
      }
      return out + (v.k == Value::kNamespace ? "}>" : "}");
    }
    case Value::kMacro:
    case Value::kBuiltin:
      return "<function>";
    default:
      return PyStr(v);
  }
}

// json.dumps(v, ensure_ascii=False, indent=indent) as Python writes it.
void DumpJson(const Value& v, int indent, int depth, size_t pos, std::string* out) {
  auto nl = [&](int d) {
    if (indent >= 0) {
      out->push_back('\n');
      out->append(static_cast<size_t>(indent * d), ' ');
    }
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (v.k) {
    case Value::kUndefined:
    case Value::kNone:
      *out += "null";
      return;
    case Value::kBool:
      *out += v.b ? "true" : "false";
      return;
    case Value::kInt:
      *out += std::to_string(v.i);
      return;
    case Value::kFloat: {
      if (std::isnan(v.f))
        *out += "NaN";
      else if (std::isinf(v.f))
        *out += v.f > 0 ? "Infinity" : "-Infinity";
      else
        *out += FloatRepr(v.f);
      return;
    }
    case Value::kString:
      *out += ojson(v.s).dump();
      return;
    case Value::kList: {
      if (v.list->empty()) {
        *out += "[]";
        return;
      }
      *out += "[";
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i) *out += item_sep;
        nl(depth + 1);
        DumpJson((*v.list)[i], indent, depth + 1, pos, out);
      }
      nl(depth);
      *out += "]";
      return;
    }
    case Value::kDict:
    case Value::kNamespace: {
      if (v.dict->empty()) {
        *out += "{}";
        return;
      }
      *out += "{";
      bool first = true;
      for (const auto& [k, x] : *v.dict) {
        if (!first) *out += item_sep;
        first = false;
        nl(depth + 1);
        *out += ojson(k).dump() + ": ";
        DumpJson(x, indent, depth + 1, pos, out);
      }
      nl(depth);
      *out += "}";
      return;
    }
    default:
      Fail(pos, std::string("tojson: cannot serialise a ") + KindName(v));
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.num() == b.num();
  if (a.k != b.k) {
    return (a.k == Value::kNone || a.k == Value::kUndefined) &&
           (b.k == Value::kNone || b.k == Value::kUndefined) && a.k == b.k;
  }
  switch (a.k) {
    case Value::kUndefined:
    case Value::kNone:
      return true;
    case Value::kString:
      return a.s == b.s;
    case Value::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!Equal((*a.list)[i], (*b.list)[i])) return false;
      return true;
    case Value::kDict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, x] : *a.dict) {
        const Value* y = b.Get(k);
        if (!y || !Equal(x, *y)) return false;
      }
      return true;
    default:
      return a.dict == b.dict && a.macro == b.macro;
  }
}

// ---- Lexer --------------------------------------------------------------------------------------

struct Segment {
  enum Type { kText, kExpr, kStmt } type;
  std::string text;
  size_t pos;  // offset of the segment's content in the source
};

std::vector<Segment> Lex(const std::string& src) {
  std::vector<Segment> out;
  size_t i = 0;
  bool strip_next = false;    // the previous tag ended with '-'
  bool trim_newline = false;  // the previous tag was a block/comment (trim_blocks)
  while (i <= src.size()) {
    size_t open = src.find('{', i);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' &&
           src[open + 1] != '%' && src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open != std::string::npos && open + 1 >= src.size()) open = std::string::npos;
    std::string text = src.substr(i, (open == std::string::npos ? src.size() : open) - i);
    size_t text_pos = i;
    if (trim_newline && !text.empty() && text[0] == '\n')
      text.erase(0, 1);
    else if (trim_newline && text.size() >= 2 && text[0] == '\r' && text[1] == '\n')
      text.erase(0, 2);
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
      text.erase(0, k);
    }
    if (open == std::string::npos) {
      // keep_trailing_newline=False: one trailing newline of the template is dropped.
      if (!text.empty() && text.back() == '\n') text.pop_back();
      if (!text.empty()) out.push_back({Segment::kText, text, text_pos});
      break;
    }
    char kind = src[open + 1];
    size_t body = open + 2;
    bool lstrip_ws = false, keep_ws = false;
    if (body < src.size() && src[body] == '-') {
      lstrip_ws = true;
      ++body;
    } else if (body < src.size() && src[body] == '+') {
      keep_ws = true;
      ++body;
    }
    if (lstrip_ws) {
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.pop_back();
    } else if ((kind == '%' || kind == '#') && !keep_ws) {
      // lstrip_blocks: spaces and tabs between a line start and a block tag are dropped.
      size_t k = open;
      while (k > 0 && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if (k == 0 || src[k - 1] == '\n') text.erase(text.size() - std::min(text.size(), open - k));
    }
    if (!text.empty()) out.push_back({Segment::kText, text, text_pos});
    const char* close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t end = src.find(close, body);
    if (kind == '{' || kind == '%') {
      // Skip string literals when searching for the closing delimiter.
      size_t k = body;
      end = std::string::npos;
      while (k + 1 < src.size()) {
        char c = src[k];
        if (c == '\'' || c == '"') {
          size_t q = k + 1;
          while (q < src.size() && src[q] != c) q += (src[q] == '\\') ? 2 : 1;
          k = q + 1;
          continue;
        }
        if (c == close[0] && src[k + 1] == close[1]) {
          end = k;
          break;
        }
        ++k;
      }
    }
    if (end == std::string::npos) Fail(open, std::string("unclosed '{") + kind + "'");
    size_t content_end = end;
    strip_next = false;
    if (content_end > body && src[content_end - 1] == '-') {
      strip_next = true;
      --content_end;
    } else if (content_end > body && src[content_end - 1] == '+') {
      --content_end;
    }
    if (kind != '#')
      out.push_back({kind == '{' ? Segment::kExpr : Segment::kStmt,
                     src.substr(body, content_end - body), body});
    trim_newline = kind != '{';
    i = end + 2;
  }
  return out;
}

// ---- Expression tokens and AST ------------------------------------------------------------------

struct Tok {
  enum Type { kName, kString, kInt, kFloat, kOp, kEnd } type;
  std::string text;
  size_t pos;
};

std::vector<Tok> TokenizeExpr(const std::string& s, size_t base) {
  std::vector<Tok> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    size_t start = i;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
      out.push_back({Tok::kName, s.substr(start, i - start), base + start});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      bool is_float = false;
      if (i + 1 < s.size() && s[i] == '.' && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        is_float = true;
        ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      }
      out.push_back({is_float ? Tok::kFloat : Tok::kInt, s.substr(start, i - start), base + start});
    } else if (c == '\'' || c == '"') {
      std::string v;
      ++i;
      while (i < s.size() && s[i] != c) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          char e = s[i + 1];
          i += 2;
          switch (e) {
            case 'n':
              v += '\n';
              break;
            case 't':
              v += '\t';
              break;
            case 'r':
              v += '\r';
              break;
            case '\\':
              v += '\\';
              break;
            case '\'':
              v += '\'';
              break;
            case '"':
              v += '"';
              break;
            case '0':
              v += '\0';
              break;
            default:
              v += '\\';
              v += e;
          }
          continue;
        }
        v += s[i++];
      }
      if (i >= s.size()) Fail(base + start, "unterminated string literal");
      ++i;
      out.push_back({Tok::kString, v, base + start});
    } else {
      static const char* ops[] = {"==", "!=", "<=", ">=", "//", "**", "<", ">", "+",
                                  "-",  "*",  "/",  "%",  "~",  "|",  ".", ",", ":",
                                  "(",  ")",  "[",  "]",  "{",  "}",  "="};
      bool found = false;
      for (const char* op : ops) {
        size_t n = std::char_traits<char>::length(op);
        if (s.compare(i, n, op) == 0) {
          out.push_back({Tok::kOp, op, base + i});
          i += n;
          found = true;
          break;
        }
      }
      if (!found) Fail(base + i, std::string("unexpected character '") + c + "'");
    }
  }
  out.push_back({Tok::kEnd, "", base + s.size()});
  return out;
}

struct Node {
  enum Kind {
    // expressions
    kLiteral,
    kName,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kAnd,
    kOr,
    kNot,
    kCond,
    kListLit,
    kDictLit,
    kTupleLit,
    // statements
    kText,
    kOutput,
    kIf,
    kFor,
    kSet,
    kSetBlock,
    kMacro,
    kBreak,
    kContinue,
    kBody
  } kind;
  size_t pos = 0;
  std::string name;  // identifier, attribute, operator, filter/test name
  Value literal;
  std::vector<std::unique_ptr<Node>> kids;
  std::vector<std::string> kwnames;  // for kCall/kFilter/kTest: names of trailing keyword args
  bool negate = false;

  Node() = default;
  // Frees the subtree without recursion: a long `a + b + c + ...` chain is a tree as deep as it
  // is long, deeper than a recursive destructor's stack allows.
  ~Node() {
    std::vector<std::unique_ptr<Node>> pending = std::move(kids);
    while (!pending.empty()) {
      std::unique_ptr<Node> n = std::move(pending.back());
      pending.pop_back();
      if (n == nullptr) continue;  // an absent part (a slice's bound)
      for (auto& k : n->kids) pending.push_back(std::move(k));
      n->kids.clear();
    }
  }
  std::vector<std::string> targets;  // for/set targets
  std::string attr;                  // set ns.attr
};
using NodeP = std::unique_ptr<Node>;

NodeP Make(Node::Kind k, size_t pos) {
  auto n = std::make_unique<Node>();
  n->kind = k;
  n->pos = pos;
  return n;
}

class ExprParser {
 public:
  ExprParser(std::vector<Tok> toks) : t_(std::move(toks)) {}
  NodeP Parse() { return Ternary(); }
  bool AtEnd() const { return t_[p_].type == Tok::kEnd; }
  const Tok& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).type == Tok::kOp && Peek(ahead).text == op;
  }
  bool IsName(const char* n, size_t ahead = 0) const {
    return Peek(ahead).type == Tok::kName && Peek(ahead).text == n;
  }
  void Expect(const char* op) {
    if (!IsOp(op))
      Fail(Peek().pos, std::string("expected '") + op + "', found '" + Peek().text + "'");
    ++p_;
  }
  std::string ExpectName() {
    if (Peek().type != Tok::kName) Fail(Peek().pos, "expected a name, found '" + Peek().text + "'");
    return t_[p_++].text;
  }
  void Next() { ++p_; }
  void ExpectEnd() {
    if (!AtEnd()) Fail(Peek().pos, "unexpected '" + Peek().text + "'");
  }

  NodeP Ternary() {
    Nest nest(&depth_, Peek().pos, "expression");
    NodeP a = Or();
    if (IsName("if")) {
      size_t pos = Peek().pos;
      Next();
      NodeP cond = Or();
      NodeP other;
      if (IsName("else")) {
        Next();
        other = Ternary();
      } else {
        other = Make(Node::kLiteral, pos);  // undefined
      }
      NodeP n = Make(Node::kCond, pos);
      n->kids.push_back(std::move(cond));
      n->kids.push_back(std::move(a));
      n->kids.push_back(std::move(other));
      return n;
    }
    return a;
  }
  NodeP Or() {
    NodeP a = And();
    while (IsName("or")) {
      NodeP n = Make(Node::kOr, Peek().pos);
      Next();
      n->kids.push_back(std::move(a));
      n->kids.push_back(And());
      a = std::move(n);
    }
    return a;
  }
  NodeP And() {
    NodeP a = Not();
    while (IsName("and")) {
      NodeP n = Make(Node::kAnd, Peek().pos);
      Next();
      n->kids.push_back(std::move(a));
      n->kids.push_back(Not());
      a = std::move(n);
    }
    return a;
  }
  NodeP Not() {
    if (IsName("not")) {
      Nest nest(&depth_, Peek().pos, "expression");
      NodeP n = Make(Node::kNot, Peek().pos);
      Next();
      n->kids.push_back(Not());
      return n;
    }
    return Compare();
  }
  NodeP Compare() {
    NodeP a = Add();
    while (true) {
      std::string op;
      size_t pos = Peek().pos;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        op = Peek().text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        Next();
        Next();
      } else {
        return a;
      }
      NodeP n = Make(Node::kBinary, pos);
      n->name = op;
      n->kids.push_back(std::move(a));
      n->kids.push_back(Add());
      a = std::move(n);
    }
  }
  NodeP Binary(NodeP a, NodeP b, const std::string& op, size_t pos) {
    NodeP n = Make(Node::kBinary, pos);
    n->name = op;
    n->kids.push_back(std::move(a));
    n->kids.push_back(std::move(b));
    return n;
  }
  NodeP Add() {
    NodeP a = Concat();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Peek().text;
      size_t pos = Peek().pos;
      Next();
      a = Binary(std::move(a), Concat(), op, pos);
    }
    return a;
  }
  NodeP Concat() {
    NodeP a = Mul();
    while (IsOp("~")) {
      size_t pos = Peek().pos;
      Next();
      a = Binary(std::move(a), Mul(), "~", pos);
    }
    return a;
  }
  NodeP Mul() {
    NodeP a = Pow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Peek().text;
      size_t pos = Peek().pos;
      Next();
      a = Binary(std::move(a), Pow(), op, pos);
    }
    return a;
  }
  NodeP Pow() {
    NodeP a = Unary();
    while (IsOp("**")) {
      size_t pos = Peek().pos;
      Next();
      a = Binary(std::move(a), Unary(), "**", pos);
    }
    return a;
  }
  NodeP Unary() {
    if (IsOp("-") || IsOp("+")) {
      Nest nest(&depth_, Peek().pos, "expression");
      NodeP n = Make(Node::kUnary, Peek().pos);
      n->name = Peek().text;
      Next();
      n->kids.push_back(Unary());
      return n;
    }
    return FilterExpr(Postfix(Primary()));
  }
  // Arguments of a call: positional then keyword (name=value).
  void Args(Node* n) {
    Expect("(");
    while (!IsOp(")")) {
      if (Peek().type == Tok::kName && IsOp("=", 1)) {
        n->kwnames.push_back(Peek().text);
        Next();
        Next();
        n->kids.push_back(Ternary());
      } else {
        if (!n->kwnames.empty()) Fail(Peek().pos, "positional argument after keyword argument");
        n->kids.push_back(Ternary());
      }
      if (!IsOp(")")) Expect(",");
    }
    Expect(")");
  }
  NodeP Postfix(NodeP a) {
    while (true) {
      if (IsOp(".")) {
        size_t pos = Peek().pos;
        Next();
        NodeP n = Make(Node::kAttr, pos);
        if (Peek().type == Tok::kInt)
          n->name = t_[p_++].text;
        else
          n->name = ExpectName();
        n->kids.push_back(std::move(a));
        a = std::move(n);
      } else if (IsOp("[")) {
        size_t pos = Peek().pos;
        Next();
        NodeP parts[3];
        int nparts = 1;
        bool slice = false;
        while (true) {
          if (IsOp(":")) {
            slice = true;
            Next();
            if (++nparts > 3) Fail(Peek().pos, "too many ':' in slice");
            continue;
          }
          if (IsOp("]")) break;
          if (parts[nparts - 1]) Fail(Peek().pos, "expected ']'");
          parts[nparts - 1] = Ternary();
        }
        Expect("]");
        NodeP n = Make(slice ? Node::kSlice : Node::kIndex, pos);
        n->kids.push_back(std::move(a));
        if (slice) {
          for (auto& part : parts) n->kids.push_back(part ? std::move(part) : nullptr);
        } else {
          if (!parts[0]) Fail(pos, "empty subscript");
          n->kids.push_back(std::move(parts[0]));
        }
        a = std::move(n);
      } else if (IsOp("(")) {
        NodeP n = Make(Node::kCall, Peek().pos);
        n->kids.push_back(std::move(a));
        Args(n.get());
        a = std::move(n);
      } else {
        return a;
      }
    }
  }
  NodeP FilterExpr(NodeP a) {
    while (true) {
      if (IsOp("|")) {
        size_t pos = Peek().pos;
        Next();
        NodeP n = Make(Node::kFilter, pos);
        n->name = ExpectName();
        n->kids.push_back(std::move(a));
        if (IsOp("(")) Args(n.get());
        a = std::move(n);
      } else if (IsName("is")) {
        size_t pos = Peek().pos;
        Next();
        NodeP n = Make(Node::kTest, pos);
        if (IsName("not")) {
          n->negate = true;
          Next();
        }
        if (Peek().type == Tok::kName)
          n->name = t_[p_++].text;
        else if (IsOp("==")) {
          n->name = "eq";
          Next();
        } else
          Fail(Peek().pos, "expected a test name after 'is'");
        n->kids.push_back(std::move(a));
        if (IsOp("(")) {
          Args(n.get());
        } else if (Peek().type == Tok::kString || Peek().type == Tok::kInt ||
                   Peek().type == Tok::kFloat ||
                   (Peek().type == Tok::kName && !IsName("and") && !IsName("or") &&
                    !IsName("else") && !IsName("if") && !IsName("in") && !IsName("not") &&
                    !IsName("is"))) {
          n->kids.push_back(Primary());  // `is divisibleby 3`, `is sameas none`
        }
        a = std::move(n);
      } else {
        return a;
      }
    }
  }
  NodeP Primary() {
    const Tok& t = Peek();
    size_t pos = t.pos;
    switch (t.type) {
      case Tok::kString: {
        NodeP n = Make(Node::kLiteral, pos);
        std::string s = t.text;
        Next();
        while (Peek().type == Tok::kString) {  // adjacent literals concatenate
          s += Peek().text;
          Next();
        }
        n->literal = Value::Str(s);
        return n;
      }
      case Tok::kInt: {
        NodeP n = Make(Node::kLiteral, pos);
        int64_t v = 0;
        const char* end = t.text.data() + t.text.size();
        const auto [ptr, ec] = std::from_chars(t.text.data(), end, v);
        if (ec != std::errc() || ptr != end)
          Fail(pos, "integer literal " + t.text + " does not fit in 64 bits");
        n->literal = Value::Int(v);
        Next();
        return n;
      }
      case Tok::kFloat: {
        NodeP n = Make(Node::kLiteral, pos);
        // Like Python's float(): overflow is inf, underflow 0 (std::stod would throw).
        n->literal = Value::Float(std::strtod(t.text.c_str(), nullptr));
        Next();
        return n;
      }
      case Tok::kName: {
        NodeP n = Make(Node::kLiteral, pos);
        const std::string& w = t.text;
        if (w == "true" || w == "True")
          n->literal = Value::Bool(true);
        else if (w == "false" || w == "False")
          n->literal = Value::Bool(false);
        else if (w == "none" || w == "None")
          n->literal = Value::None();
        else {
          n->kind = Node::kName;
          n->name = w;
        }
        Next();
        return n;
      }
      case Tok::kOp: {
        if (t.text == "(") {
          Next();
          if (IsOp(")")) {
            Next();
            return Make(Node::kTupleLit, pos);
          }
          NodeP first = Ternary();
          if (IsOp(",")) {
            NodeP n = Make(Node::kTupleLit, pos);
            n->kids.push_back(std::move(first));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              n->kids.push_back(Ternary());
            }
            Expect(")");
            return n;
          }
          Expect(")");
          return first;
        }
        if (t.text == "[") {
          Next();
          NodeP n = Make(Node::kListLit, pos);
          while (!IsOp("]")) {
            n->kids.push_back(Ternary());
            if (!IsOp("]")) Expect(",");
          }
          Expect("]");
          return n;
        }
        if (t.text == "{") {
          Next();
          NodeP n = Make(Node::kDictLit, pos);
          while (!IsOp("}")) {
            n->kids.push_back(Ternary());
            Expect(":");
            n->kids.push_back(Ternary());
            if (!IsOp("}")) Expect(",");
          }
          Expect("}");
          return n;
        }
        Fail(pos, "unexpected '" + t.text + "'");
      }
      case Tok::kEnd:
        Fail(pos, "unexpected end of expression");
    }
    Fail(pos, "unexpected token");
  }

 private:
  std::vector<Tok> t_;
  size_t p_ = 0;
  int depth_ = 0;  // recursion of the parse (see Nest)
};

// ---- Statement parser ---------------------------------------------------------------------------

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Segment> segs) : segs_(std::move(segs)) {}

  NodeP ParseAll() {
    std::string stop;
    NodeP body = ParseBody({}, &stop);
    return body;
  }

 private:
  // Parses until a statement whose keyword is in `stops`; returns it in *stop (its parser in
  // *stop_parser for elif/else arguments).
  NodeP ParseBody(const std::vector<std::string>& stops, std::string* stop,
                  std::unique_ptr<ExprParser>* stop_parser = nullptr, size_t* stop_pos = nullptr) {
    NodeP body = Make(Node::kBody, i_ < segs_.size() ? segs_[i_].pos : 0);
    while (i_ < segs_.size()) {
      const Segment& seg = segs_[i_++];
      if (seg.type == Segment::kText) {
        NodeP n = Make(Node::kText, seg.pos);
        n->literal = Value::Str(seg.text);
        body->kids.push_back(std::move(n));
        continue;
      }
      auto ep = std::make_unique<ExprParser>(TokenizeExpr(seg.text, seg.pos));
      if (seg.type == Segment::kExpr) {
        NodeP n = Make(Node::kOutput, seg.pos);
        n->kids.push_back(ep->Parse());
        ep->ExpectEnd();
        body->kids.push_back(std::move(n));
        continue;
      }
      size_t kpos = ep->Peek().pos;
      std::string kw = ep->ExpectName();
      if (std::find(stops.begin(), stops.end(), kw) != stops.end()) {
        *stop = kw;
        if (stop_parser) *stop_parser = std::move(ep);
        if (stop_pos) *stop_pos = kpos;
        return body;
      }
      body->kids.push_back(ParseStatement(kw, kpos, ep.get()));
    }
    if (!stops.empty()) Fail(last_open_, "missing {% " + stops.back() + " %}");
    return body;
  }

  NodeP ParseStatement(const std::string& kw, size_t pos, ExprParser* ep) {
    Nest nest(&depth_, pos, "block");
    size_t saved_open = last_open_;
    last_open_ = pos;
    NodeP n;
    if (kw == "if") {
      n = Make(Node::kIf, pos);
      n->kids.push_back(ep->Parse());
      ep->ExpectEnd();
      while (true) {
        std::string stop;
        std::unique_ptr<ExprParser> sp;
        size_t spos = 0;
        n->kids.push_back(ParseBody({"elif", "else", "endif"}, &stop, &sp, &spos));
        if (stop == "elif") {
          n->kids.push_back(sp->Parse());
          sp->ExpectEnd();
          continue;
        }
        if (stop == "else") {
          sp->ExpectEnd();
          n->kids.push_back(ParseBody({"endif"}, &stop, &sp));
          sp->ExpectEnd();
        } else {
          sp->ExpectEnd();
        }
        break;
      }
      // kids: cond, body, cond, body, ..., [else body]
    } else if (kw == "for") {
      n = Make(Node::kFor, pos);
      n->targets.push_back(ep->ExpectName());
      while (ep->IsOp(",")) {
        ep->Next();
        n->targets.push_back(ep->ExpectName());
      }
      if (!ep->IsName("in")) Fail(ep->Peek().pos, "expected 'in' in for statement");
      ep->Next();
      n->kids.push_back(ep->Or());  // iterable (no ternary: `if` starts the filter)
      if (ep->IsName("if")) {
        ep->Next();
        n->kids.push_back(ep->Parse());
      } else {
        n->kids.push_back(nullptr);
      }
      if (ep->IsName("recursive")) Fail(ep->Peek().pos, "unsupported: recursive for loops");
      ep->ExpectEnd();
      std::string stop;
      std::unique_ptr<ExprParser> sp;
      n->kids.push_back(ParseBody({"else", "endfor"}, &stop, &sp));
      sp->ExpectEnd();
      if (stop == "else") {
        n->kids.push_back(ParseBody({"endfor"}, &stop, &sp));
        sp->ExpectEnd();
      }
    } else if (kw == "set") {
      std::string target = ep->ExpectName();
      if (ep->IsOp(".")) {
        ep->Next();
        n = Make(Node::kSet, pos);
        n->targets.push_back(target);
        n->attr = ep->ExpectName();
      } else {
        n = Make(Node::kSet, pos);
        n->targets.push_back(target);
        while (ep->IsOp(",")) {
          ep->Next();
          n->targets.push_back(ep->ExpectName());
        }
      }
      if (ep->AtEnd() && n->attr.empty() && n->targets.size() == 1) {
        n->kind = Node::kSetBlock;
        std::string stop;
        std::unique_ptr<ExprParser> sp;
        n->kids.push_back(ParseBody({"endset"}, &stop, &sp));
        sp->ExpectEnd();
      } else {
        ep->Expect("=");
        n->kids.push_back(ep->Parse());
        ep->ExpectEnd();
      }
    } else if (kw == "macro") {
      n = Make(Node::kMacro, pos);
      n->name = ep->ExpectName();
      ep->Expect("(");
      while (!ep->IsOp(")")) {
        n->targets.push_back(ep->ExpectName());
        if (ep->IsOp("=")) {
          ep->Next();
          n->kids.push_back(ep->Parse());
        } else {
          n->kids.push_back(nullptr);
        }
        if (!ep->IsOp(")")) ep->Expect(",");
      }
      ep->Expect(")");
      ep->ExpectEnd();
      std::string stop;
      std::unique_ptr<ExprParser> sp;
      n->kids.push_back(ParseBody({"endmacro"}, &stop, &sp));  // last kid: body
    } else if (kw == "break" || kw == "continue") {
      ep->ExpectEnd();
      n = Make(kw == "break" ? Node::kBreak : Node::kContinue, pos);
    } else if (kw == "generation" || kw == "endgeneration") {
      // transformers' assistant-mask markers render nothing.
      ep->ExpectEnd();
      n = Make(Node::kBody, pos);
    } else {
      Fail(pos, "unsupported statement '{% " + kw + " %}'");
    }
    last_open_ = saved_open;
    return n;
  }

  std::vector<Segment> segs_;
  size_t i_ = 0;
  size_t last_open_ = 0;
  int depth_ = 0;  // blocks open (see Nest)
};

}  // namespace

struct ChatTemplate::Program {
  std::string source;
  std::string name;
  NodeP root;
};

namespace {

std::string Position(const std::string& src, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < src.size(); ++i) {
    if (src[i] == '\n') {
      ++line;
      col = 1;
    } else
      ++col;
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

// Fails when the tree under `root` nests deeper than kMaxNesting, which the parser's own guards
// miss for left-associative chains (`a + b + c + ...`, `x.a.b.c...`, `x|f|g|h...`): each link is a
// level for the recursive renderer. Walks with an explicit stack, since the tree may be deep.
void CheckNesting(const Node& root) {
  std::vector<std::pair<const Node*, int>> stack = {{&root, 1}};
  while (!stack.empty()) {
    const auto [n, depth] = stack.back();
    stack.pop_back();
    if (depth > kMaxNesting)
      Fail(n->pos,
           "expressions and blocks nested deeper than " + std::to_string(kMaxNesting) + " levels");
    for (const auto& k : n->kids)
      if (k != nullptr) stack.emplace_back(k.get(), depth + 1);  // null: a slice's absent bound
  }
}

// ---- Renderer -----------------------------------------------------------------------------------

enum class Flow { kNormal, kBreak, kContinue };

// Bounds that keep a hostile or buggy template from exhausting memory.
constexpr double kMaxElements = 1e7;

// `v`, or an error at `pos` when it nests deeper than kMaxNesting (a list wrapped in a list
// 100,000 times in a loop overflowed the stack of whatever printed or freed it).
Value CheckValue(Value v, size_t pos) {
  if (v.depth > kMaxNesting)
    Fail(pos, "values nested deeper than " + std::to_string(kMaxNesting) + " levels");
  return v;
}

class Renderer {
 public:
  explicit Renderer(const Value& globals) {
    scopes_.push_back(std::make_shared<Dict>(*globals.dict));
  }

  Flow Exec(const Node* n, std::string* out) {
    switch (n->kind) {
      case Node::kBody:
        for (const auto& k : n->kids) {
          Flow f = Exec(k.get(), out);
          if (f != Flow::kNormal) return f;
        }
        return Flow::kNormal;
      case Node::kText:
        *out += n->literal.s;
        return Flow::kNormal;
      case Node::kOutput:
        *out += PyStr(Eval(n->kids[0].get()));
        return Flow::kNormal;
      case Node::kIf: {
        size_t k = 0;
        for (; k + 1 < n->kids.size(); k += 2)
          if (Truthy(Eval(n->kids[k].get()))) return Exec(n->kids[k + 1].get(), out);
        if (k < n->kids.size()) return Exec(n->kids[k].get(), out);
        return Flow::kNormal;
      }
      case Node::kFor:
        return ExecFor(n, out);
      case Node::kSet: {
        Value v = Eval(n->kids[0].get());
        if (!n->attr.empty()) {
          Value ns = Lookup(n->targets[0], n->pos);
          if (ns.k != Value::kNamespace)
            Fail(n->pos, "cannot set attribute '" + n->attr + "' on a " + KindName(ns) +
                             " (only namespace() objects are mutable)");
          // A namespace holding a namespace could hold itself (a cycle printing recurses on).
          if (v.k == Value::kNamespace || v.holds_namespace)
            Fail(n->pos, "cannot set attribute '" + n->attr +
                             "' to a namespace or a value "
                             "holding one");
          if (v.depth + 1 > kMaxNesting)
            Fail(n->pos, "values nested deeper than " + std::to_string(kMaxNesting) + " levels");
          SetKey(ns.dict.get(), n->attr, v);
        } else if (n->targets.size() == 1) {
          SetKey(scopes_.back().get(), n->targets[0], v);
        } else {
          List items = Iterate(v, n->pos);
          if (items.size() != n->targets.size())
            Fail(n->pos, "cannot unpack " + std::to_string(items.size()) + " values into " +
                             std::to_string(n->targets.size()) + " names");
          for (size_t i = 0; i < items.size(); ++i)
            SetKey(scopes_.back().get(), n->targets[i], items[i]);
        }
        return Flow::kNormal;
      }
      case Node::kSetBlock: {
        std::string body;
        Exec(n->kids[0].get(), &body);
        SetKey(scopes_.back().get(), n->targets[0], Value::Str(body));
        return Flow::kNormal;
      }
      case Node::kMacro: {
        auto m = std::make_shared<Macro>();
        m->params = n->targets;
        for (size_t i = 0; i + 1 < n->kids.size(); ++i) m->defaults.push_back(n->kids[i].get());
        m->body = n->kids.back().get();
        Value v;
        v.k = Value::kMacro;
        v.macro = m;
        SetKey(scopes_.back().get(), n->name, v);
        return Flow::kNormal;
      }
      case Node::kBreak:
        return Flow::kBreak;
      case Node::kContinue:
        return Flow::kContinue;
      default:
        Fail(n->pos, "internal: not a statement");
    }
  }

 private:
  static void SetKey(Dict* d, const std::string& k, Value v) {
    for (auto& [kk, vv] : *d)
      if (kk == k) {
        vv = std::move(v);
        return;
      }
    d->emplace_back(k, std::move(v));
  }

  Value Lookup(const std::string& name, size_t pos) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      for (const auto& [k, v] : **it)
        if (k == name) return v;
    static const char* builtins[] = {"namespace", "range", "raise_exception", "strftime_now",
                                     "dict"};
    for (const char* b : builtins)
      if (name == b) {
        Value v;
        v.k = Value::kBuiltin;
        v.s = b;
        return v;
      }
    return Value::Undefined(name);
  }

  List Iterate(const Value& v, size_t pos) {
    switch (v.k) {
      case Value::kList:
        return *v.list;
      case Value::kDict: {
        List keys;
        for (const auto& [k, x] : *v.dict) keys.push_back(Value::Str(k));
        return keys;
      }
      case Value::kString: {
        List chars;
        for (size_t i = 0; i < v.s.size();) {
          size_t n = 1;
          unsigned char c = v.s[i];
          if (c >= 0xF0)
            n = 4;
          else if (c >= 0xE0)
            n = 3;
          else if (c >= 0xC0)
            n = 2;
          chars.push_back(Value::Str(v.s.substr(i, n)));
          i += n;
        }
        return chars;
      }
      case Value::kUndefined:
        Fail(pos, "'" + v.s + "' is undefined (cannot iterate)");
      default:
        Fail(pos, std::string("cannot iterate over a ") + KindName(v));
    }
  }

  Flow ExecFor(const Node* n, std::string* out) {
    Value seq = Eval(n->kids[0].get());
    List items = Iterate(seq, n->kids[0]->pos);
    const Node* filter = n->kids[1].get();
    const Node* body = n->kids[2].get();
    const Node* else_body = n->kids.size() > 3 ? n->kids[3].get() : nullptr;
    auto bind = [&](Dict* scope, const Value& item) {
      if (n->targets.size() == 1) {
        SetKey(scope, n->targets[0], item);
        return;
      }
      List parts = Iterate(item, n->pos);
      if (parts.size() != n->targets.size())
        Fail(n->pos, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                         std::to_string(n->targets.size()) + " loop variables");
      for (size_t i = 0; i < parts.size(); ++i) SetKey(scope, n->targets[i], parts[i]);
    };
    if (filter) {
      List kept;
      for (const Value& item : items) {
        scopes_.push_back(std::make_shared<Dict>());
        bind(scopes_.back().get(), item);
        bool keep = Truthy(Eval(filter));
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (else_body) return Exec(else_body, out);
      return Flow::kNormal;
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      auto scope = std::make_shared<Dict>();
      Dict loop = {{"index0", Value::Int(i)},
                   {"index", Value::Int(i + 1)},
                   {"revindex0", Value::Int(len - i - 1)},
                   {"revindex", Value::Int(len - i)},
                   {"first", Value::Bool(i == 0)},
                   {"last", Value::Bool(i == len - 1)},
                   {"length", Value::Int(len)},
                   {"previtem", i > 0 ? items[i - 1] : Value::Undefined("loop.previtem")},
                   {"nextitem", i + 1 < len ? items[i + 1] : Value::Undefined("loop.nextitem")}};
      scope->emplace_back("loop", Value::MakeDict(std::move(loop)));
      bind(scope.get(), items[i]);
      scopes_.push_back(scope);
      Flow f = Exec(body, out);
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value Attr(const Value& obj, const std::string& name, size_t pos) {
    if (obj.k == Value::kUndefined)
      Fail(pos, "'" + obj.s + "' is undefined (cannot read attribute '" + name + "')");
    if (obj.k == Value::kDict || obj.k == Value::kNamespace) {
      if (const Value* v = obj.Get(name)) return *v;
      if (obj.k == Value::kDict &&
          (name == "items" || name == "keys" || name == "values" || name == "get"))
        return Method(obj, "dict." + name);
      return Value::Undefined(name);
    }
    if (obj.k == Value::kString) {
      static const char* methods[] = {"startswith", "endswith", "strip",      "lstrip",
                                      "rstrip",     "split",    "rsplit",     "lower",
                                      "upper",      "title",    "capitalize", "replace",
                                      "find",       "count",    "join",       "splitlines"};
      for (const char* m : methods)
        if (name == m) return Method(obj, std::string("str.") + m);
    }
    if (obj.k == Value::kList) {
      if (name == "index" || name == "count") return Method(obj, "list." + name);
    }
    return Value::Undefined(name);
  }

  static Value Method(const Value& obj, const std::string& name) {
    Value v;
    v.k = Value::kBuiltin;
    v.s = name;
    v.self = std::make_shared<Value>(obj);
    return v;
  }

  Value Index(const Value& obj, const Value& key, size_t pos) {
    if (obj.k == Value::kUndefined) Fail(pos, "'" + obj.s + "' is undefined (cannot subscript it)");
    if (obj.k == Value::kList || obj.k == Value::kString) {
      if (key.k != Value::kInt && key.k != Value::kBool)
        return key.k == Value::kString ? Attr(obj, key.s, pos) : Value::Undefined("[index]");
      int64_t n = obj.k == Value::kList ? static_cast<int64_t>(obj.list->size())
                                        : static_cast<int64_t>(obj.s.size());
      int64_t i = key.k == Value::kInt ? key.i : key.b;
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("[" + std::to_string(key.i) + "]");
      if (obj.k == Value::kList) return (*obj.list)[i];
      List chars = Iterate(obj, pos);  // code points, as Python indexes str
      n = static_cast<int64_t>(chars.size());
      i = key.k == Value::kInt ? key.i : key.b;
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("[index]");
      return chars[i];
    }
    if (obj.k == Value::kDict || obj.k == Value::kNamespace) {
      if (const Value* v = obj.Get(PyStr(key))) return *v;
      return Value::Undefined(PyStr(key));
    }
    Fail(pos, std::string("cannot subscript a ") + KindName(obj));
  }

  Value Slice(const Value& obj, const Node* n) {
    auto bound = [&](const NodeP& k) -> std::optional<int64_t> {
      if (!k) return std::nullopt;
      Value v = Eval(k.get());
      if (v.k == Value::kNone) return std::nullopt;
      if (v.k != Value::kInt) Fail(k->pos, "slice bounds must be integers");
      return v.i;
    };
    std::optional<int64_t> start = bound(n->kids[1]), stop = bound(n->kids[2]),
                           step_o = bound(n->kids[3]);
    int64_t step = step_o.value_or(1);
    if (step == 0) Fail(n->pos, "slice step cannot be zero");
    List items = Iterate(obj, n->pos);
    int64_t len = static_cast<int64_t>(items.size());
    auto clamp = [&](std::optional<int64_t> x, int64_t dflt, int64_t lo, int64_t hi) {
      if (!x) return dflt;
      int64_t v = *x < 0 ? *x + len : *x;
      return std::clamp(v, lo, hi);
    };
    int64_t b, e;
    if (step > 0) {
      b = clamp(start, 0, 0, len);
      e = clamp(stop, len, 0, len);
    } else {
      b = clamp(start, len - 1, -1, len - 1);
      e = clamp(stop, -1, -1, len - 1);
    }
    // A step longer than the sequence takes one item, as it does clamped (and cannot overflow i).
    step = std::clamp(step, -len - 1, len + 1);
    List out;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) out.push_back(items[i]);
    if (obj.k == Value::kString) {
      std::string s;
      for (const Value& c : out) s += c.s;
      return Value::Str(s);
    }
    return Value::MakeList(std::move(out));
  }

  Value Eval(const Node* n) {
    switch (n->kind) {
      case Node::kLiteral:
        return n->literal;
      case Node::kName:
        return Lookup(n->name, n->pos);
      case Node::kAttr:
        return Attr(Eval(n->kids[0].get()), n->name, n->pos);
      case Node::kIndex:
        return Index(Eval(n->kids[0].get()), Eval(n->kids[1].get()), n->pos);
      case Node::kSlice:
        return Slice(Eval(n->kids[0].get()), n);
      case Node::kListLit:
      case Node::kTupleLit: {
        List l;
        for (const auto& k : n->kids) l.push_back(Eval(k.get()));
        return CheckValue(Value::MakeList(std::move(l)), n->pos);
      }
      case Node::kDictLit: {
        Dict d;
        for (size_t i = 0; i + 1 < n->kids.size(); i += 2) {
          Value k = Eval(n->kids[i].get());
          SetKey(&d, PyStr(k), Eval(n->kids[i + 1].get()));
        }
        return CheckValue(Value::MakeDict(std::move(d)), n->pos);
      }
      case Node::kNot:
        return Value::Bool(!Truthy(Eval(n->kids[0].get())));
      case Node::kAnd: {
        Value a = Eval(n->kids[0].get());
        return Truthy(a) ? Eval(n->kids[1].get()) : a;
      }
      case Node::kOr: {
        Value a = Eval(n->kids[0].get());
        return Truthy(a) ? a : Eval(n->kids[1].get());
      }
      case Node::kCond:
        return Truthy(Eval(n->kids[0].get())) ? Eval(n->kids[1].get()) : Eval(n->kids[2].get());
      case Node::kUnary: {
        Value v = Eval(n->kids[0].get());
        if (!v.is_number())
          Fail(n->pos, std::string("bad operand for unary ") + n->name + ": " + KindName(v));
        if (n->name == "+") return v;
        if (v.k == Value::kFloat) return Value::Float(-v.f);
        const int64_t i = v.k == Value::kBool ? v.b : v.i;
        if (i == INT64_MIN) Fail(n->pos, "integer overflow: -(" + std::to_string(i) + ")");
        return Value::Int(-i);
      }
      case Node::kBinary:
        return Binary(n);
      case Node::kCall:
        return Call(n);
      case Node::kFilter:
        return Filter(n);
      case Node::kTest:
        return Value::Bool(Test(n) != n->negate);
      default:
        Fail(n->pos, "internal: not an expression");
    }
  }

  Value Binary(const Node* n) {
    const std::string& op = n->name;
    Value a = Eval(n->kids[0].get());
    Value b = Eval(n->kids[1].get());
    size_t pos = n->pos;
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.k == Value::kString) {
        if (a.k != Value::kString) Fail(pos, "'in <string>' requires a string on the left");
        found = b.s.find(a.s) != std::string::npos;
      } else if (b.k == Value::kList) {
        for (const Value& x : *b.list) found = found || Equal(a, x);
      } else if (b.k == Value::kDict || b.k == Value::kNamespace) {
        found = a.k == Value::kString && b.Get(a.s) != nullptr;
      } else if (b.k == Value::kUndefined) {
        Fail(pos, "'" + b.s + "' is undefined (right side of 'in')");
      } else {
        Fail(pos, std::string("'in' needs a string, list or dict, not a ") + KindName(b));
      }
      return Value::Bool(op == "in" ? found : !found);
    }
    if (op == "~") return Value::Str(PyStr(a) + PyStr(b));
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.is_number() && b.is_number())
        c = a.num() < b.num() ? -1 : a.num() > b.num() ? 1 : 0;
      else if (a.k == Value::kString && b.k == Value::kString)
        c = a.s.compare(b.s) < 0 ? -1 : a.s == b.s ? 0 : 1;
      else
        Fail(pos, std::string("cannot compare ") + KindName(a) + " with " + KindName(b));
      if (op == "<") return Value::Bool(c < 0);
      if (op == ">") return Value::Bool(c > 0);
      if (op == "<=") return Value::Bool(c <= 0);
      return Value::Bool(c >= 0);
    }
    if (op == "+") {
      if (a.k == Value::kString && b.k == Value::kString) return Value::Str(a.s + b.s);
      if (a.k == Value::kList && b.k == Value::kList) {
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::MakeList(std::move(l));
      }
    }
    if (op == "*" && ((a.k == Value::kString && b.k == Value::kInt) ||
                      (a.k == Value::kInt && b.k == Value::kString))) {
      const Value& s = a.k == Value::kString ? a : b;
      int64_t times = a.k == Value::kInt ? a.i : b.i;
      if (times > 0 && static_cast<double>(times) * s.s.size() > kMaxElements * 10.0)
        Fail(pos, "string repetition of more than 10^8 bytes");
      std::string r;
      for (int64_t i = 0; i < times; ++i) r += s.s;
      return Value::Str(r);
    }
    if (!a.is_number() || !b.is_number()) {
      std::string why = a.k == Value::kUndefined   ? " ('" + a.s + "' is undefined)"
                        : b.k == Value::kUndefined ? " ('" + b.s + "' is undefined)"
                                                   : "";
      Fail(pos, std::string("unsupported operand types for ") + op + ": " + KindName(a) + " and " +
                    KindName(b) + why);
    }
    bool ints = a.k != Value::kFloat && b.k != Value::kFloat;
    // Integers are 64-bit (Python's are unbounded): a result that does not fit is an error.
    const int64_t ai = !ints ? 0 : a.k == Value::kBool ? a.b : a.i;
    const int64_t bi = !ints ? 0 : b.k == Value::kBool ? b.b : b.i;
    auto overflow = [&]() -> Value {
      Fail(pos, "integer overflow: " + std::to_string(ai) + " " + op + " " + std::to_string(bi) +
                    " does not fit in 64 bits");
    };
    int64_t r = 0;
    if (op == "+") {
      if (!ints) return Value::Float(a.num() + b.num());
      return __builtin_add_overflow(ai, bi, &r) ? overflow() : Value::Int(r);
    }
    if (op == "-") {
      if (!ints) return Value::Float(a.num() - b.num());
      return __builtin_sub_overflow(ai, bi, &r) ? overflow() : Value::Int(r);
    }
    if (op == "*") {
      if (!ints) return Value::Float(a.num() * b.num());
      return __builtin_mul_overflow(ai, bi, &r) ? overflow() : Value::Int(r);
    }
    if (op == "/") {
      if (b.num() == 0) Fail(pos, "division by zero");
      return Value::Float(a.num() / b.num());
    }
    if (op == "//" || op == "%") {
      if (b.num() == 0) Fail(pos, "division by zero");
      if (ints) {
        if (ai == INT64_MIN && bi == -1) return op == "//" ? overflow() : Value::Int(0);
        int64_t q = ai / bi, r = ai % bi;
        if (r != 0 && ((r < 0) != (bi < 0))) {
          --q;
          r += bi;
        }
        return Value::Int(op == "//" ? q : r);
      }
      double q = std::floor(a.num() / b.num());
      return op == "//" ? Value::Float(q) : Value::Float(a.num() - q * b.num());
    }
    if (op == "**") {
      if (ints && bi >= 0) {
        // By squaring: at most 64 steps before 1, 0 and -1 aside, every power overflows.
        int64_t base = ai, p = 1;
        for (int64_t e = bi; e > 0; e >>= 1) {
          if ((e & 1) && __builtin_mul_overflow(p, base, &p)) return overflow();
          if (e > 1 && __builtin_mul_overflow(base, base, &base)) return overflow();
        }
        return Value::Int(p);
      }
      return Value::Float(std::pow(a.num(), b.num()));
    }
    Fail(pos, "unsupported operator " + op);
  }

  struct Args {
    List pos;
    Dict kw;
    const Value* Kw(const std::string& k) const {
      for (const auto& [kk, v] : kw)
        if (kk == k) return &v;
      return nullptr;
    }
    // Positional i, else keyword `name`, else nullptr.
    const Value* Get(size_t i, const std::string& name) const {
      if (i < pos.size()) return &pos[i];
      return Kw(name);
    }
  };
  Args EvalArgs(const Node* n, size_t first) {
    Args a;
    size_t nkw = n->kwnames.size();
    size_t npos = n->kids.size() - first - nkw;
    for (size_t i = 0; i < npos; ++i) a.pos.push_back(Eval(n->kids[first + i].get()));
    for (size_t i = 0; i < nkw; ++i)
      a.kw.emplace_back(n->kwnames[i], Eval(n->kids[first + npos + i].get()));
    return a;
  }

  static std::string StripChars(const std::string& s, const Value* chars, bool left, bool right) {
    auto is_strip = [&](char c) {
      if (!chars || chars->k == Value::kNone)
        return std::isspace(static_cast<unsigned char>(c)) != 0;
      return chars->s.find(c) != std::string::npos;
    };
    size_t b = 0, e = s.size();
    if (left)
      while (b < e && is_strip(s[b])) ++b;
    if (right)
      while (e > b && is_strip(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  Value CallBuiltin(const Value& f, const Args& a, size_t pos) {
    const std::string& name = f.s;
    auto need_str = [&](const Value* v, const char* what) -> const std::string& {
      if (!v || v->k != Value::kString) Fail(pos, name + ": " + what + " must be a string");
      return v->s;
    };
    if (name == "namespace" || name == "dict") {
      Value v = Value::MakeDict();
      if (name == "namespace") v.k = Value::kNamespace;
      for (const Value& p : a.pos) {
        if (p.k != Value::kDict) Fail(pos, name + "() takes keyword arguments or a dict");
        for (const auto& [k, x] : *p.dict) SetKey(v.dict.get(), k, x);
      }
      for (const auto& [k, x] : a.kw) SetKey(v.dict.get(), k, x);
      v.Measure();
      if (v.k == Value::kNamespace && v.holds_namespace)
        Fail(pos, "namespace() cannot hold a namespace");
      return CheckValue(std::move(v), pos);
    }
    if (name == "range") {
      int64_t start = 0, stop, step = 1;
      for (const Value& p : a.pos)
        if (p.k != Value::kInt) Fail(pos, "range() takes integers");
      if (a.pos.size() == 1)
        stop = a.pos[0].i;
      else if (a.pos.size() >= 2) {
        start = a.pos[0].i;
        stop = a.pos[1].i;
        if (a.pos.size() > 2) step = a.pos[2].i;
      } else
        Fail(pos, "range() needs 1 to 3 arguments");
      if (step == 0) Fail(pos, "range() step cannot be zero");
      const double count = (static_cast<double>(stop) - static_cast<double>(start)) / step;
      if (count > kMaxElements) Fail(pos, "range() of more than 10^7 elements");
      List l;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        l.push_back(Value::Int(i));
        if (__builtin_add_overflow(i, step, &i)) break;  // past stop, which an int64 holds
      }
      return Value::MakeList(std::move(l));
    }
    if (name == "raise_exception") {
      Fail(pos, "raise_exception: " + (a.pos.empty() ? std::string() : PyStr(a.pos[0])));
    }
    if (name == "strftime_now") {
      std::string fmt = need_str(a.Get(0, "format"), "format");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
      return Value::Str(std::string(buf, n));
    }
    const Value& self = *f.self;
    if (name.rfind("str.", 0) == 0) {
      const std::string& s = self.s;
      std::string m = name.substr(4);
      if (m == "startswith" || m == "endswith") {
        const Value* p = a.Get(0, "prefix");
        if (!p) Fail(pos, m + "() needs an argument");
        List opts = p->k == Value::kList ? *p->list : List{*p};
        for (const Value& o : opts) {
          if (o.k != Value::kString) Fail(pos, m + "() argument must be a string");
          if (m == "startswith" ? s.compare(0, o.s.size(), o.s) == 0 && s.size() >= o.s.size()
                                : s.size() >= o.s.size() &&
                                      s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0)
            return Value::Bool(true);
        }
        return Value::Bool(false);
      }
      if (m == "strip") return Value::Str(StripChars(s, a.Get(0, "chars"), true, true));
      if (m == "lstrip") return Value::Str(StripChars(s, a.Get(0, "chars"), true, false));
      if (m == "rstrip") return Value::Str(StripChars(s, a.Get(0, "chars"), false, true));
      if (m == "lower" || m == "upper") {
        std::string r = s;
        for (char& c : r)
          c = m == "lower" ? std::tolower(static_cast<unsigned char>(c))
                           : std::toupper(static_cast<unsigned char>(c));
        return Value::Str(r);
      }
      if (m == "title" || m == "capitalize") return Value::Str(TitleCase(s, m == "capitalize"));
      if (m == "split" || m == "rsplit") {
        const Value* sep = a.Get(0, "sep");
        const Value* maxs = a.Get(1, "maxsplit");
        int64_t max = maxs && maxs->k == Value::kInt ? maxs->i : -1;
        return Value::MakeList(
            Split(s, sep && sep->k != Value::kNone ? &need_str(sep, "sep") : nullptr, max,
                  m == "rsplit", pos));
      }
      if (m == "splitlines") {
        List l;
        size_t b = 0;
        for (size_t i = 0; i < s.size(); ++i)
          if (s[i] == '\n') {
            l.push_back(Value::Str(s.substr(b, i - b)));
            b = i + 1;
          }
        if (b < s.size()) l.push_back(Value::Str(s.substr(b)));
        return Value::MakeList(std::move(l));
      }
      if (m == "replace") {
        const std::string& from = need_str(a.Get(0, "old"), "old");
        const std::string& to = need_str(a.Get(1, "new"), "new");
        return Value::Str(ReplaceAll(s, from, to));
      }
      if (m == "find") {
        size_t r = s.find(need_str(a.Get(0, "sub"), "sub"));
        return Value::Int(r == std::string::npos ? -1 : static_cast<int64_t>(r));
      }
      if (m == "count") {
        const std::string& sub = need_str(a.Get(0, "sub"), "sub");
        int64_t c = 0;
        if (sub.empty()) return Value::Int(static_cast<int64_t>(s.size()) + 1);
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
        return Value::Int(c);
      }
      if (m == "join") {
        const Value* it = a.Get(0, "iterable");
        if (!it) Fail(pos, "join() needs an argument");
        std::string r;
        List items = Iterate(*it, pos);
        for (size_t i = 0; i < items.size(); ++i) r += (i ? s : "") + PyStr(items[i]);
        return Value::Str(r);
      }
    }
    if (name.rfind("dict.", 0) == 0) {
      std::string m = name.substr(5);
      if (m == "items") {
        List l;
        for (const auto& [k, x] : *self.dict) l.push_back(Value::MakeList({Value::Str(k), x}));
        return Value::MakeList(std::move(l));
      }
      if (m == "keys" || m == "values") {
        List l;
        for (const auto& [k, x] : *self.dict) l.push_back(m == "keys" ? Value::Str(k) : x);
        return Value::MakeList(std::move(l));
      }
      if (m == "get") {
        const Value* k = a.Get(0, "key");
        if (!k) Fail(pos, "get() needs a key");
        if (const Value* v = self.Get(PyStr(*k))) return *v;
        const Value* d = a.Get(1, "default");
        return d ? *d : Value::None();
      }
    }
    if (name == "list.index" || name == "list.count") {
      const Value* x = a.Get(0, "value");
      if (!x) Fail(pos, name + "() needs an argument");
      int64_t c = 0;
      for (size_t i = 0; i < self.list->size(); ++i)
        if (Equal((*self.list)[i], *x)) {
          if (name == "list.index") return Value::Int(static_cast<int64_t>(i));
          ++c;
        }
      if (name == "list.index") Fail(pos, "list.index(): value not in list");
      return Value::Int(c);
    }
    Fail(pos, "unsupported function '" + name + "'");
  }

  static std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
    if (from.empty()) return s;
    std::string r;
    size_t p = 0, q;
    while ((q = s.find(from, p)) != std::string::npos) {
      r += s.substr(p, q - p) + to;
      p = q + from.size();
    }
    return r + s.substr(p);
  }

  static std::string TitleCase(const std::string& s, bool only_first) {
    std::string r = s;
    bool start = true;
    for (size_t i = 0; i < r.size(); ++i) {
      unsigned char c = r[i];
      if (only_first) {
        r[i] = i == 0 ? std::toupper(c) : std::tolower(c);
        continue;
      }
      if (std::isalpha(c)) {
        r[i] = start ? std::toupper(c) : std::tolower(c);
        start = false;
      } else {
        start = true;
      }
    }
    return r;
  }

  List Split(const std::string& s, const std::string* sep, int64_t max, bool from_right,
             size_t pos) {
    std::vector<std::string> parts;
    if (!sep) {  // runs of whitespace, no empty parts
      std::istringstream in(s);
      std::string w;
      while (in >> w) parts.push_back(w);
      if (max >= 0 && static_cast<int64_t>(parts.size()) > max + 1) {
        // Rare in templates; keep the simple semantics exact for the left split only.
        if (from_right) Fail(pos, "rsplit() without a separator and with maxsplit is unsupported");
        size_t p = 0;
        std::vector<std::string> r;
        for (int64_t i = 0; i < max; ++i) {
          while (p < s.size() && std::isspace(static_cast<unsigned char>(s[p]))) ++p;
          size_t b = p;
          while (p < s.size() && !std::isspace(static_cast<unsigned char>(s[p]))) ++p;
          r.push_back(s.substr(b, p - b));
        }
        while (p < s.size() && std::isspace(static_cast<unsigned char>(s[p]))) ++p;
        r.push_back(s.substr(p));
        parts = r;
      }
    } else {
      if (sep->empty()) Fail(pos, "split(): empty separator");
      if (!from_right) {
        size_t p = 0, q;
        int64_t n = 0;
        while ((max < 0 || n < max) && (q = s.find(*sep, p)) != std::string::npos) {
          parts.push_back(s.substr(p, q - p));
          p = q + sep->size();
          ++n;
        }
        parts.push_back(s.substr(p));
      } else {
        size_t end = s.size();
        int64_t n = 0;
        std::vector<std::string> rev;
        while (max < 0 || n < max) {
          if (end < sep->size()) break;
          size_t q = s.rfind(*sep, end - sep->size());
          if (q == std::string::npos) break;
          rev.push_back(s.substr(q + sep->size(), end - q - sep->size()));
          end = q;
          ++n;
        }
        rev.push_back(s.substr(0, end));
        parts.assign(rev.rbegin(), rev.rend());
      }
    }
    List l;
    for (auto& p : parts) l.push_back(Value::Str(p));
    return l;
  }

  Value CallValue(const Value& f, const Args& a, size_t pos) {
    if (f.k == Value::kBuiltin) return CallBuiltin(f, a, pos);
    if (f.k == Value::kMacro) {
      const Macro& m = *f.macro;
      Nest nest(&call_depth_, pos, "macro calls");
      auto scope = std::make_shared<Dict>();
      if (a.pos.size() > m.params.size()) Fail(pos, "macro called with too many arguments");
      for (size_t i = 0; i < m.params.size(); ++i) {
        const Value* v = a.Get(i, m.params[i]);
        if (v)
          SetKey(scope.get(), m.params[i], *v);
        else if (m.defaults[i])
          SetKey(scope.get(), m.params[i], Eval(m.defaults[i]));
        else
          SetKey(scope.get(), m.params[i], Value::Undefined(m.params[i]));
      }
      // Macros see the template's globals and their own arguments.
      std::vector<std::shared_ptr<Dict>> saved(scopes_.begin() + 1, scopes_.end());
      scopes_.resize(1);
      scopes_.push_back(scope);
      std::string out;
      Exec(m.body, &out);
      scopes_.resize(1);
      scopes_.insert(scopes_.end(), saved.begin(), saved.end());
      return Value::Str(out);
    }
    if (f.k == Value::kUndefined) Fail(pos, "'" + f.s + "' is undefined (cannot call it)");
    Fail(pos, std::string("a ") + KindName(f) + " is not callable");
  }

  Value Call(const Node* n) {
    Value f = Eval(n->kids[0].get());
    return CallValue(f, EvalArgs(n, 1), n->pos);
  }

  Value ApplyFilter(const std::string& name, const Value& v, const Args& a, size_t pos) {
    auto str_arg = [&](size_t i, const char* key, const char* dflt) -> std::string {
      const Value* x = a.Get(i, key);
      if (!x) return dflt;
      if (x->k != Value::kString) Fail(pos, name + ": argument '" + key + "' must be a string");
      return x->s;
    };
    if (name == "safe" || name == "e" || name == "escape") {
      if (name != "safe")
        Fail(pos, "unsupported filter '" + name + "' (autoescape is off in chat templates)");
      return v;
    }
    if (name == "trim") return Value::Str(StripChars(PyStr(v), a.Get(0, "chars"), true, true));
    if (name == "string") return Value::Str(PyStr(v));
    if (name == "lower" || name == "upper") {
      std::string r = PyStr(v);
      for (char& c : r)
        c = name == "lower" ? std::tolower(static_cast<unsigned char>(c))
                            : std::toupper(static_cast<unsigned char>(c));
      return Value::Str(r);
    }
    if (name == "title") return Value::Str(TitleCase(PyStr(v), false));
    if (name == "capitalize") return Value::Str(TitleCase(PyStr(v), true));
    if (name == "length" || name == "count") {
      if (v.k == Value::kString) return Value::Int(static_cast<int64_t>(Iterate(v, pos).size()));
      if (v.k == Value::kList) return Value::Int(static_cast<int64_t>(v.list->size()));
      if (v.k == Value::kDict) return Value::Int(static_cast<int64_t>(v.dict->size()));
      if (v.k == Value::kUndefined) return Value::Int(0);
      Fail(pos, std::string("length of a ") + KindName(v));
    }
    if (name == "tojson") {
      const Value* ind = a.Get(0, "indent");
      int indent = ind && ind->k == Value::kInt ? static_cast<int>(ind->i) : -1;
      std::string out;
      DumpJson(v, indent, 0, pos, &out);
      return Value::Str(out);
    }
    if (name == "first" || name == "last") {
      List items = Iterate(v, pos);
      if (items.empty()) return Value::Undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::MakeList(Iterate(v, pos));
    if (name == "reverse") {
      List items = Iterate(v, pos);
      std::reverse(items.begin(), items.end());
      if (v.k == Value::kString) {
        std::string s;
        for (const Value& c : items) s += c.s;
        return Value::Str(s);
      }
      return Value::MakeList(std::move(items));
    }
    if (name == "join") {
      std::string sep = str_arg(0, "d", "");
      const Value* attr = a.Get(1, "attribute");
      std::string r;
      List items = Iterate(v, pos);
      for (size_t i = 0; i < items.size(); ++i)
        r += (i ? sep : "") + PyStr(attr ? Attr(items[i], PyStr(*attr), pos) : items[i]);
      return Value::Str(r);
    }
    if (name == "default" || name == "d") {
      const Value* dflt = a.Get(0, "default_value");
      const Value* boolean = a.Get(1, "boolean");
      bool use = v.k == Value::kUndefined || (boolean && Truthy(*boolean) && !Truthy(v));
      return use ? (dflt ? *dflt : Value::Str("")) : v;
    }
    if (name == "int") {
      if (v.k == Value::kString) {
        try {
          return Value::Int(std::stoll(v.s));
        } catch (...) {
          return Value::Int(0);
        }
      }
      if (v.k == Value::kFloat) {
        // Truncation toward zero, as Python's int(); only finite values inside int64 convert.
        if (!(std::fabs(v.f) < 9.2233720368547758e18))
          Fail(pos, "int of " + PyStr(v) + ": out of the 64-bit range");
        return Value::Int(static_cast<int64_t>(v.f));
      }
      if (v.k == Value::kBool) return Value::Int(v.b);
      return v.k == Value::kInt ? v : Value::Int(0);
    }
    if (name == "float") {
      if (v.k == Value::kString) {
        try {
          return Value::Float(std::stod(v.s));
        } catch (...) {
          return Value::Float(0);
        }
      }
      return v.is_number() ? Value::Float(v.num()) : Value::Float(0);
    }
    if (name == "abs") {
      if (v.k == Value::kInt) {
        if (v.i == INT64_MIN) Fail(pos, "integer overflow: abs(" + std::to_string(v.i) + ")");
        return Value::Int(v.i < 0 ? -v.i : v.i);
      }
      if (v.k == Value::kFloat) return Value::Float(std::fabs(v.f));
      Fail(pos, "abs of a non-number");
    }
    if (name == "round") {
      const Value* prec = a.Get(0, "precision");
      double p = std::pow(10.0, prec && prec->k == Value::kInt ? prec->i : 0);
      return Value::Float(std::nearbyint(v.num() * p) / p);
    }
    if (name == "items") return CallBuiltin(Method(v, "dict.items"), Args{}, pos);
    if (name == "replace") {
      return Value::Str(ReplaceAll(PyStr(v), str_arg(0, "old", ""), str_arg(1, "new", "")));
    }
    if (name == "sum") {
      Value acc = Value::Int(0);
      for (const Value& x : Iterate(v, pos)) {
        if (!x.is_number()) Fail(pos, "sum of non-numbers");
        int64_t r = 0;
        if (acc.k == Value::kFloat || x.k == Value::kFloat)
          acc = Value::Float(acc.num() + x.num());
        else if (__builtin_add_overflow(acc.i, x.k == Value::kBool ? x.b : x.i, &r))
          Fail(pos, "integer overflow in sum");
        else
          acc = Value::Int(r);
      }
      return acc;
    }
    if (name == "unique") {
      List out;
      for (const Value& x : Iterate(v, pos)) {
        bool seen = false;
        for (const Value& y : out) seen = seen || Equal(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::MakeList(std::move(out));
    }
    if (name == "sort") {
      List items = Iterate(v, pos);
      const Value* rev = a.Kw("reverse");
      const Value* attr = a.Kw("attribute");
      auto key = [&](const Value& x) { return attr ? Attr(x, PyStr(*attr), pos) : x; };
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        Value kx = key(x), ky = key(y);
        if (kx.is_number() && ky.is_number()) return kx.num() < ky.num();
        return PyStr(kx) < PyStr(ky);
      });
      if (rev && Truthy(*rev)) std::reverse(items.begin(), items.end());
      return Value::MakeList(std::move(items));
    }
    if (name == "map") {
      List out;
      const Value* attr = a.Kw("attribute");
      for (const Value& x : Iterate(v, pos)) {
        if (attr) {
          Value r = Attr(x, PyStr(*attr), pos);
          const Value* d = a.Kw("default");
          out.push_back(r.k == Value::kUndefined && d ? *d : r);
        } else {
          if (a.pos.empty() || a.pos[0].k != Value::kString)
            Fail(pos, "map() needs a filter name or attribute=");
          Args rest;
          rest.pos.assign(a.pos.begin() + 1, a.pos.end());
          out.push_back(ApplyFilter(a.pos[0].s, x, rest, pos));
        }
      }
      return Value::MakeList(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name.size() > 6;
      bool want = name.rfind("select", 0) == 0;
      List out;
      for (const Value& x : Iterate(v, pos)) {
        size_t k = 0;
        Value subject = x;
        if (by_attr) {
          if (a.pos.empty()) Fail(pos, name + "() needs an attribute name");
          subject = Attr(x, PyStr(a.pos[0]), pos);
          k = 1;
        }
        bool ok;
        if (k < a.pos.size()) {
          if (a.pos[k].k != Value::kString) Fail(pos, name + "(): test name must be a string");
          Args rest;
          rest.pos.assign(a.pos.begin() + k + 1, a.pos.end());
          ok = RunTest(a.pos[k].s, subject, rest, pos);
        } else {
          ok = Truthy(subject);
        }
        if (ok == want) out.push_back(x);
      }
      return Value::MakeList(std::move(out));
    }
    Fail(pos, "unsupported filter '" + name + "'");
  }

  Value Filter(const Node* n) {
    Value v = Eval(n->kids[0].get());
    return ApplyFilter(n->name, v, EvalArgs(n, 1), n->pos);
  }

  bool RunTest(const std::string& t, const Value& v, const Args& a, size_t pos) {
    auto arg = [&]() -> const Value& {
      if (a.pos.empty()) Fail(pos, "test '" + t + "' needs an argument");
      return a.pos[0];
    };
    if (t == "defined") return v.k != Value::kUndefined;
    if (t == "undefined") return v.k == Value::kUndefined;
    if (t == "none") return v.k == Value::kNone;
    if (t == "string") return v.k == Value::kString;
    if (t == "number") return v.k == Value::kInt || v.k == Value::kFloat;
    if (t == "integer") return v.k == Value::kInt;
    if (t == "float") return v.k == Value::kFloat;
    if (t == "boolean") return v.k == Value::kBool;
    if (t == "true") return v.k == Value::kBool && v.b;
    if (t == "false") return v.k == Value::kBool && !v.b;
    if (t == "mapping") return v.k == Value::kDict || v.k == Value::kNamespace;
    if (t == "iterable") return v.k == Value::kList || v.k == Value::kDict || v.k == Value::kString;
    if (t == "sequence") return v.k == Value::kList || v.k == Value::kDict || v.k == Value::kString;
    if (t == "callable") return v.k == Value::kMacro || v.k == Value::kBuiltin;
    if (t == "odd" || t == "even") {
      if (v.k != Value::kInt) Fail(pos, "test '" + t + "' needs an integer");
      return (v.i % 2 != 0) == (t == "odd");
    }
    if (t == "divisibleby") {
      const Value& d = arg();
      if (v.k != Value::kInt || d.k != Value::kInt || d.i == 0)
        Fail(pos, "divisibleby needs integers");
      return v.i % d.i == 0;
    }
    if (t == "lower" || t == "upper") {
      if (v.k != Value::kString) return false;
      for (char c : v.s)
        if (t == "lower" ? std::isupper(static_cast<unsigned char>(c))
                         : std::islower(static_cast<unsigned char>(c)))
          return false;
      return true;
    }
    if (t == "eq" || t == "equalto" || t == "==") return Equal(v, arg());
    if (t == "ne" || t == "!=") return !Equal(v, arg());
    if (t == "sameas") return Equal(v, arg()) && v.k == arg().k;
    if (t == "in") {
      const Value& c = arg();
      if (c.k == Value::kString) return v.k == Value::kString && c.s.find(v.s) != std::string::npos;
      if (c.k == Value::kList) {
        for (const Value& x : *c.list)
          if (Equal(v, x)) return true;
        return false;
      }
      if (c.k == Value::kDict) return v.k == Value::kString && c.Get(v.s) != nullptr;
      Fail(pos, "test 'in' needs a container");
    }
    if (t == "lt" || t == "le" || t == "gt" || t == "ge" || t == "lessthan" || t == "greaterthan") {
      const Value& o = arg();
      if (!v.is_number() || !o.is_number()) Fail(pos, "test '" + t + "' needs numbers");
      if (t == "lt" || t == "lessthan") return v.num() < o.num();
      if (t == "le") return v.num() <= o.num();
      if (t == "gt" || t == "greaterthan") return v.num() > o.num();
      return v.num() >= o.num();
    }
    Fail(pos, "unsupported test '" + t + "'");
  }

  bool Test(const Node* n) {
    Value v = Eval(n->kids[0].get());
    return RunTest(n->name, v, EvalArgs(n, 1), n->pos);
  }

  std::vector<std::shared_ptr<Dict>> scopes_;
  int call_depth_ = 0;  // macro calls in progress (see Nest)
};

}  // namespace

Result<ChatTemplate> ChatTemplate::Parse(const std::string& source, const std::string& name) {
  auto prog = std::make_shared<Program>();
  prog->source = source;
  prog->name = name;
  try {
    prog->root = TemplateParser(Lex(source)).ParseAll();
    CheckNesting(*prog->root);
  } catch (const TemplateError& e) {
    return InvalidArgument(name + ":" + Position(source, e.pos) + ": " + e.message);
  }
  ChatTemplate t;
  t.program_ = std::move(prog);
  return t;
}

Result<ChatTemplate> ChatTemplate::FromTokenizerConfig(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(const std::string bytes, ReadFileBounded(path, kMaxLargeJsonBytes));
  CHAINRL_RETURN_IF_ERROR(CheckJson(bytes, path, kMaxJsonDepth, StatusCode::kCorrupt));
  const ojson cfg = ojson::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object() || !cfg.contains("chat_template"))
    return NotFound(path + ": chat_template: missing");
  std::string text;
  const ojson& ct = cfg["chat_template"];
  if (ct.is_string()) {
    text = ct.get<std::string>();
  } else if (ct.is_array()) {
    for (const auto& e : ct)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string())
        text = e["template"].get<std::string>();
    if (text.empty()) return NotFound(path + ": chat_template: no template named \"default\"");
  } else {
    return Corrupt(path + ": chat_template: expected a string");
  }
  CHAINRL_ASSIGN_OR_RETURN(ChatTemplate t, Parse(text, path + ": chat_template"));
  auto token = [&](const char* key) -> std::string {
    if (!cfg.contains(key)) return "";
    const ojson& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
      return v["content"].get<std::string>();
    return "";
  };
  t.bos_token = token("bos_token");
  t.eos_token = token("eos_token");
  return t;
}

const std::string& ChatTemplate::source() const { return program_->source; }

Result<std::string> ChatTemplate::Render(const ojson& context) const {
  if (!context.is_object())
    return InvalidArgument(program_->name + ": context must be a JSON object");
  Value globals = FromJson(context);
  std::string out;
  try {
    Renderer r(globals);
    r.Exec(program_->root.get(), &out);
  } catch (const TemplateError& e) {
    return InvalidArgument(program_->name + ":" + Position(program_->source, e.pos) + ": " +
                           e.message);
  }
  return out;
}

Result<std::string> RenderChat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt, const ojson& extra_context) {
  ojson ctx = ojson::object();
  ojson msgs = ojson::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    ojson j = ojson::object();
    j["role"] = m.role;
    j["content"] = m.content;
    if (!m.extra.is_null()) {
      if (!m.extra.is_object())
        return InvalidArgument("message " + std::to_string(i) + ": extra must be a JSON object");
      for (auto it = m.extra.begin(); it != m.extra.end(); ++it) j[it.key()] = it.value();
    }
    msgs.push_back(std::move(j));
  }
  ctx["messages"] = std::move(msgs);
  ctx["add_generation_prompt"] = add_generation_prompt;
  if (!tmpl.bos_token.empty()) ctx["bos_token"] = tmpl.bos_token;
  if (!tmpl.eos_token.empty()) ctx["eos_token"] = tmpl.eos_token;
  if (!extra_context.is_null()) {
    if (!extra_context.is_object()) return InvalidArgument("extra_context must be a JSON object");
    for (auto it = extra_context.begin(); it != extra_context.end(); ++it)
      ctx[it.key()] = it.value();
  }
  return tmpl.Render(ctx);
}

}  // namespace chainrl
