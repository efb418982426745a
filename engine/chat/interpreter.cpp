// Jinja interpreter (see interpreter.h): statement execution, expression evaluation, operators, macros.
#include "chat/interpreter.h"

#include <cmath>

#include "chat/builtins.h"

namespace tfu::chat {

namespace {

// One scope: variables bound by set/for/macro parameters; lookups walk to the parent.
struct frame {
    value_dict vars;
    const frame* parent = nullptr;
    const value* find(const std::string& name) const {
        for (const frame* f = this; f; f = f->parent)
            for (const auto& kv : f->vars)
                if (kv.first.str() == name) return &kv.second;
        return nullptr;
    }
    void set(const std::string& name, value v) {
        for (auto& kv : vars)
            if (kv.first.str() == name) {
                kv.second = std::move(v);
                return;
            }
        vars.emplace_back(value(name), std::move(v));
    }
};

enum class flow { normal, break_, continue_ };

class interpreter {
public:
    interpreter(const value_dict& globals, const render_limits& lim) : limits_(lim) { root_.vars = globals; }

    std::string run(const stmt_list& body) {
        std::string out;
        exec_list(body, out, root_);
        return out;
    }
    int line() const { return line_; }

private:
    render_limits limits_;
    frame root_;
    int line_ = 0;
    int call_depth_ = 0;
    uint64_t steps_ = 0;
    const std::string* block_input_ = nullptr;  // text of the innermost {% filter %} / {% set %} block

    void step() {
        if (++steps_ > limits_.max_steps) runtime_fail("template exceeded its step limit");
    }
    void append(std::string& out, const std::string& s) {
        if (out.size() + s.size() > limits_.max_output)
            runtime_fail("output larger than " + std::to_string(limits_.max_output) + " bytes");
        out += s;
    }

    flow exec_list(const stmt_list& body, std::string& out, frame& f) {
        for (const stmt_ptr& s : body) {
            flow fl = exec(*s, out, f);
            if (fl != flow::normal) return fl;
        }
        return flow::normal;
    }

    void bind_targets(frame& f, const std::vector<std::string>& targets, const value& v) {
        if (targets.size() == 1) {
            f.set(targets[0], v);
            return;
        }
        value_list items = iterate(v);
        if (items.size() != targets.size())
            runtime_fail(items.size() > targets.size()
                             ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                             : "not enough values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                                   std::to_string(items.size()) + ")");
        for (size_t i = 0; i < targets.size(); ++i) f.set(targets[i], items[i]);
    }

    std::string capture(const stmt_list& body, frame& f) {
        std::string buf;
        exec_list(body, buf, f);
        return buf;
    }

    value apply_filters_to_text(const expr& chain, const std::string& text, frame& f) {
        const std::string* saved = block_input_;
        block_input_ = &text;
        value v = eval(chain, f);
        block_input_ = saved;
        return v;
    }

    flow exec(const stmt& s, std::string& out, frame& f) {
        line_ = s.line;
        step();
        switch (s.k) {
            case stmt::kind::text: append(out, s.text); return flow::normal;
            case stmt::kind::output: append(out, to_str(eval(*s.e, f))); return flow::normal;
            case stmt::kind::if_:
                if (truthy(eval(*s.e, f))) return exec_list(s.body, out, f);
                return exec_list(s.else_body, out, f);
            case stmt::kind::for_: return exec_for(s, out, f);
            case stmt::kind::set: {
                value v = eval(*s.e, f);
                if (!s.attr.empty()) {
                    const value* target = f.find(s.targets[0]);
                    if (!target || !target->is_namespace())
                        runtime_fail("cannot assign attribute on non-namespace object");
                    value_dict& attrs = target->ns_attrs();
                    for (auto& kv : attrs)
                        if (kv.first.str() == s.attr) {
                            kv.second = std::move(v);
                            return flow::normal;
                        }
                    attrs.emplace_back(value(s.attr), std::move(v));
                    return flow::normal;
                }
                bind_targets(f, s.targets, v);
                return flow::normal;
            }
            case stmt::kind::set_block: {
                std::string text = capture(s.body, f);
                f.set(s.targets[0], s.e ? apply_filters_to_text(*s.e, text, f) : value(text));
                return flow::normal;
            }
            case stmt::kind::filter_block: {
                std::string text = capture(s.body, f);
                append(out, to_str(apply_filters_to_text(*s.e, text, f)));
                return flow::normal;
            }
            case stmt::kind::macro: f.set(s.name, make_macro(s)); return flow::normal;
            case stmt::kind::call_block: {
                const stmt* sp = &s;
                frame* fp = &f;
                value caller = value::function("caller", [this, sp, fp](const call_args&) {
                    frame inner;
                    inner.parent = fp;
                    return value(capture(sp->body, inner));
                });
                append(out, to_str(eval_call(*s.e, f, &caller)));
                return flow::normal;
            }
            case stmt::kind::break_: return flow::break_;
            case stmt::kind::continue_: return flow::continue_;
        }
        return flow::normal;
    }

    flow exec_for(const stmt& s, std::string& out, frame& f) {
        value seq = eval(*s.e, f);
        if (seq.is_none() || seq.is_number() || seq.is_bool() || seq.is_callable() || seq.is_namespace())
            runtime_fail(std::string("'") + type_name(seq) + "' object is not iterable");
        value_list items = iterate(seq);
        if (s.cond) {
            value_list kept;
            for (const value& it : items) {
                step();
                frame tmp;
                tmp.parent = &f;
                bind_targets(tmp, s.targets, it);
                if (truthy(eval(*s.cond, tmp))) kept.push_back(it);
            }
            items = std::move(kept);
        }
        if (items.empty()) return exec_list(s.else_body, out, f);
        const int64_t n = int64_t(items.size());
        for (int64_t i = 0; i < n; ++i) {
            step();
            frame inner;
            inner.parent = &f;
            bind_targets(inner, s.targets, items[size_t(i)]);
            value_dict loop{
                {value("index"), value(i + 1)},
                {value("index0"), value(i)},
                {value("revindex"), value(n - i)},
                {value("revindex0"), value(n - i - 1)},
                {value("first"), value(i == 0)},
                {value("last"), value(i == n - 1)},
                {value("length"), value(n)},
                {value("depth"), value(int64_t(1))},
                {value("depth0"), value(int64_t(0))},
            };
            if (i > 0) loop.emplace_back(value("previtem"), items[size_t(i - 1)]);
            if (i + 1 < n) loop.emplace_back(value("nextitem"), items[size_t(i + 1)]);
            loop.emplace_back(value("cycle"), value::function("loop.cycle", [i](const call_args& a) {
                                  if (a.pos.empty()) runtime_fail("no items for cycling given");
                                  return a.pos[size_t(i) % a.pos.size()];
                              }));
            inner.set("loop", value(std::move(loop)));
            flow fl = exec_list(s.body, out, inner);
            if (fl == flow::break_) break;
        }
        return flow::normal;
    }

    value make_macro(const stmt& s) {
        const stmt* sp = &s;
        return value::function(s.name, [this, sp](const call_args& a) { return call_macro(*sp, a); });
    }

    value call_macro(const stmt& m, const call_args& a) {
        if (call_depth_ >= limits_.max_call_depth) runtime_fail("macro calls nested too deeply");
        step();
        if (a.pos.size() > m.params.size())
            runtime_fail("macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                         " argument(s)");
        frame inner;
        inner.parent = &root_;
        for (size_t i = 0; i < m.params.size(); ++i) {
            const macro_param& p = m.params[i];
            const value* v = a.get(i, p.name.c_str());
            if (v) inner.set(p.name, *v);
            else if (p.default_value) inner.set(p.name, eval(*p.default_value, inner));
            else inner.set(p.name, value::undefined("'" + p.name + "' is undefined"));
        }
        for (const auto& kw : a.kw) {
            bool known = kw.first == "caller";
            for (const macro_param& p : m.params) known |= p.name == kw.first;
            if (!known) runtime_fail("macro '" + m.name + "' takes no keyword argument '" + kw.first + "'");
            if (kw.first == "caller") inner.set("caller", kw.second);
        }
        ++call_depth_;
        int saved_line = line_;
        std::string out;
        try {
            exec_list(m.body, out, inner);
        } catch (...) {
            --call_depth_;
            throw;
        }
        --call_depth_;
        line_ = saved_line;
        return value(out);
    }

    call_args eval_args(const expr& e, frame& f) {
        call_args a;
        size_t first_kw = 1 + e.n_pos;
        for (size_t i = 1; i < first_kw; ++i) a.pos.push_back(eval(*e.kids[i], f));
        for (size_t k = 0; k < e.kw_names.size(); ++k) a.kw.emplace_back(e.kw_names[k], eval(*e.kids[first_kw + k], f));
        return a;
    }

    value eval_call(const expr& e, frame& f, const value* caller) {
        value callee = eval(*e.kids[0], f);
        require_defined(callee);
        if (!callee.is_callable()) runtime_fail(std::string("'") + type_name(callee) + "' object is not callable");
        call_args a = eval_args(e, f);
        if (caller) a.kw.emplace_back("caller", *caller);  // {% call %}: the body, as caller()
        if (call_depth_ >= limits_.max_call_depth) runtime_fail("calls nested too deeply");
        ++call_depth_;
        value r;
        try {
            r = callee.call(a);
        } catch (...) {
            --call_depth_;
            throw;
        }
        --call_depth_;
        return r;
    }

    value eval(const expr& e, frame& f) {
        line_ = e.line;
        switch (e.k) {
            case expr::kind::literal: return e.lit;
            case expr::kind::name: {
                const value* v = f.find(e.name);
                return v ? *v : value::undefined("'" + e.name + "' is undefined");
            }
            case expr::kind::list: {
                value_list l;
                for (const expr_ptr& k : e.kids) l.push_back(eval(*k, f));
                return e.name == "tuple" ? value::tuple(std::move(l)) : value(std::move(l));
            }
            case expr::kind::dict: {
                value_dict d;
                for (size_t i = 0; i + 1 < e.kids.size(); i += 2) {
                    value k = eval(*e.kids[i], f);
                    value v = eval(*e.kids[i + 1], f);
                    bool replaced = false;
                    for (auto& kv : d)
                        if (equals(kv.first, k)) {
                            kv.second = v;
                            replaced = true;
                        }
                    if (!replaced) d.emplace_back(std::move(k), std::move(v));
                }
                return value(std::move(d));
            }
            case expr::kind::attr: return get_attr(eval(*e.kids[0], f), e.name);
            case expr::kind::item: {
                value obj = eval(*e.kids[0], f);
                return get_item(obj, eval(*e.kids[1], f));
            }
            case expr::kind::slice: {
                value obj = eval(*e.kids[0], f);
                value parts[3];
                for (int i = 0; i < 3; ++i)
                    if (e.kids[size_t(i) + 1]) parts[i] = eval(*e.kids[size_t(i) + 1], f);
                return get_slice(obj, parts[0], parts[1], parts[2]);
            }
            case expr::kind::call: return eval_call(e, f, nullptr);
            case expr::kind::filter: {
                value in;
                if (e.kids[0]) in = eval(*e.kids[0], f);
                else if (block_input_) in = value(*block_input_);
                call_args a = eval_args(e, f);
                line_ = e.line;
                return apply_filter(e.name, in, a);
            }
            case expr::kind::test: {
                value v = eval(*e.kids[0], f);
                call_args a = eval_args(e, f);
                line_ = e.line;
                return value(apply_test(e.name, v, a) != e.negate);
            }
            case expr::kind::not_: return value(!truthy(eval(*e.kids[0], f)));
            case expr::kind::neg:
            case expr::kind::pos: {
                value v = require_defined(eval(*e.kids[0], f));
                if (!v.is_number()) runtime_fail(std::string("bad operand type for unary ") +
                                                 (e.k == expr::kind::neg ? "-" : "+") + ": '" + type_name(v) + "'");
                if (e.k == expr::kind::pos) return v.is_int() ? value(v.as_int()) : v;
                if (v.kind() == value::type::floating) return value(-v.as_double());
                if (v.as_int() == INT64_MIN) runtime_fail("integer overflow");
                return value(-v.as_int());
            }
            case expr::kind::binary: {
                value a = eval(*e.kids[0], f);
                value b = eval(*e.kids[1], f);
                line_ = e.line;
                return binary_op(e.name, a, b);
            }
            case expr::kind::compare: {
                value left = eval(*e.kids[0], f);
                for (size_t i = 0; i < e.ops.size(); ++i) {
                    value right = eval(*e.kids[i + 1], f);
                    line_ = e.line;
                    if (!compare(e.ops[i], left, right)) return value(false);
                    left = std::move(right);
                }
                return value(true);
            }
            case expr::kind::and_: {
                value a = eval(*e.kids[0], f);
                return truthy(a) ? eval(*e.kids[1], f) : a;
            }
            case expr::kind::or_: {
                value a = eval(*e.kids[0], f);
                return truthy(a) ? a : eval(*e.kids[1], f);
            }
            case expr::kind::cond:
                if (truthy(eval(*e.kids[1], f))) return eval(*e.kids[0], f);
                if (e.kids[2]) return eval(*e.kids[2], f);
                return value::undefined("the inline if-expression evaluated to false and no else section was defined");
        }
        return value();
    }

    static bool contains(const value& seq, const value& x) {
        if (seq.is_undefined()) return false;
        if (seq.is_string()) {
            if (!x.is_string())
                runtime_fail(std::string("'in <string>' requires string as left operand, not ") + type_name(x));
            return seq.str().find(x.str()) != std::string::npos;
        }
        if (seq.is_dict()) return seq.find(x) != nullptr;
        if (seq.is_list()) {
            for (const value& e : seq.list())
                if (equals(e, x)) return true;
            return false;
        }
        runtime_fail(std::string("argument of type '") + type_name(seq) + "' is not iterable");
    }

    static bool compare(const std::string& op, const value& a, const value& b) {
        if (op == "==") return equals(a, b);
        if (op == "!=") return !equals(a, b);
        if (op == "<") return less(a, b);
        if (op == ">") return less(b, a);
        if (op == "<=") return less(a, b) || equals(a, b);
        if (op == ">=") return less(b, a) || equals(a, b);
        if (op == "in") return contains(b, a);
        return !contains(b, a);  // notin
    }

    [[noreturn]] static void bad_operands(const std::string& op, const value& a, const value& b) {
        require_defined(a);
        require_defined(b);
        if (op == "+" && a.is_string())
            runtime_fail(std::string("can only concatenate str (not \"") + type_name(b) + "\") to str");
        runtime_fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
    }

    static value repeat(const value& seq, int64_t n) {
        if (n <= 0) return seq.is_string() ? value("") : value(value_list{});
        if (seq.is_string()) {
            check_size(seq.str().size() * size_t(std::min<int64_t>(n, int64_t(max_result_size) + 1)));
            std::string out;
            for (int64_t i = 0; i < n; ++i) out += seq.str();
            return value(out);
        }
        check_size(seq.list().size() * size_t(std::min<int64_t>(n, int64_t(max_result_size) + 1)));
        value_list out;
        for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
        return value(out);
    }

    static value binary_op(const std::string& op, const value& a, const value& b) {
        if (op == "~") {
            std::string s = to_str(a) + to_str(b);
            check_size(s.size());
            return value(s);
        }
        bool ints = a.is_int() && b.is_int();
        bool nums = a.is_number() && b.is_number();
        if (op == "+") {
            if (ints) {
                int64_t r;
                if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) runtime_fail("integer overflow");
                return value(r);
            }
            if (nums) return value(a.as_double() + b.as_double());
            if (a.is_string() && b.is_string()) {
                check_size(a.str().size() + b.str().size());
                return value(a.str() + b.str());
            }
            if (a.is_list() && b.is_list()) {
                check_size(a.list().size() + b.list().size());
                value_list l = a.list();
                l.insert(l.end(), b.list().begin(), b.list().end());
                return value(l);
            }
            bad_operands(op, a, b);
        }
        if (op == "-") {
            if (ints) {
                int64_t r;
                if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) runtime_fail("integer overflow");
                return value(r);
            }
            if (nums) return value(a.as_double() - b.as_double());
            bad_operands(op, a, b);
        }
        if (op == "*") {
            if (ints) {
                int64_t r;
                if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) runtime_fail("integer overflow");
                return value(r);
            }
            if (nums) return value(a.as_double() * b.as_double());
            if ((a.is_string() || a.is_list()) && b.is_int()) return repeat(a, b.as_int());
            if (a.is_int() && (b.is_string() || b.is_list())) return repeat(b, a.as_int());
            bad_operands(op, a, b);
        }
        if (op == "/") {
            if (!nums) bad_operands(op, a, b);
            if (b.as_double() == 0.0) runtime_fail("division by zero");
            return value(a.as_double() / b.as_double());
        }
        if (op == "//" || op == "%") {
            if (!nums) bad_operands(op, a, b);
            if (ints) {
                int64_t x = a.as_int(), y = b.as_int();
                if (y == 0) runtime_fail(op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
                if (x == INT64_MIN && y == -1) runtime_fail("integer overflow");
                int64_t q = x / y, r = x % y;
                if (r != 0 && ((r < 0) != (y < 0))) {  // Python floors toward negative infinity
                    --q;
                    r += y;
                }
                return op == "//" ? value(q) : value(r);
            }
            double x = a.as_double(), y = b.as_double();
            if (y == 0.0) runtime_fail("float division by zero");
            if (op == "//") return value(std::floor(x / y));
            double r = std::fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return value(r);
        }
        if (op == "**") {
            if (!nums) bad_operands(op, a, b);
            if (ints && b.as_int() >= 0) {
                int64_t base = a.as_int(), r = 1, e = b.as_int();
                while (e > 0) {
                    if (e & 1)
                        if (__builtin_mul_overflow(r, base, &r)) runtime_fail("integer overflow");
                    e >>= 1;
                    if (e > 0 && __builtin_mul_overflow(base, base, &base)) runtime_fail("integer overflow");
                }
                return value(r);
            }
            if (a.as_double() == 0.0 && b.as_double() < 0) runtime_fail("0.0 cannot be raised to a negative power");
            return value(std::pow(a.as_double(), b.as_double()));
        }
        runtime_fail("unknown operator " + op);
    }
};

}  // namespace

std::string interpret(const stmt_list& body, const value_dict& globals, const render_limits& limits,
                      int* error_line) {
    interpreter in(globals, limits);
    try {
        return in.run(body);
    } catch (const template_runtime_error&) {
        if (error_line) *error_line = in.line();
        throw;
    }
}

}  // namespace tfu::chat
