// Jinja parser (see parser.h): recursive descent over lexer tokens, building ast.h nodes.
#include "chat/parser.h"

#include <initializer_list>

#include "chat/lexer.h"

namespace tfu::chat {

namespace {

constexpr int max_expr_depth = 256;  // AST height; bounds the interpreter's recursion too

class parser {
public:
    explicit parser(std::vector<token> toks) : t_(std::move(toks)) {}

    stmt_list run() {
        std::string end;
        stmt_list body = parse_until({}, &end);
        return body;
    }

private:
    std::vector<token> t_;
    size_t p_ = 0;
    int nesting_ = 0;
    int loop_depth_ = 0;

    struct nest_guard {
        parser& p;
        explicit nest_guard(parser& pp, int line) : p(pp) {
            if (++p.nesting_ > max_nesting) syntax_fail(line, "template nested too deeply");
        }
        ~nest_guard() { --p.nesting_; }
    };

    const token& cur() const { return t_[p_]; }
    const token& peek(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
    void next() {
        if (p_ + 1 < t_.size()) ++p_;
    }
    bool is_op(const char* s) const { return cur().type == tok::op && cur().s == s; }
    bool is_name(const char* s) const { return cur().type == tok::name && cur().s == s; }
    bool accept_op(const char* s) {
        if (!is_op(s)) return false;
        next();
        return true;
    }
    bool accept_name(const char* s) {
        if (!is_name(s)) return false;
        next();
        return true;
    }
    static std::string describe(const token& t) {
        switch (t.type) {
            case tok::text: return "template text";
            case tok::var_begin: return "'{{'";
            case tok::var_end: return "end of print statement";
            case tok::block_begin: return "'{%'";
            case tok::block_end: return "end of statement block";
            case tok::name: return "'" + t.s + "'";
            case tok::string: return "string";
            case tok::integer: return "integer";
            case tok::floating: return "float";
            case tok::op: return "'" + t.s + "'";
            case tok::eof: return "end of template";
        }
        return "token";
    }
    [[noreturn]] void unexpected(const std::string& wanted) const {
        syntax_fail(cur().line, "expected " + wanted + ", got " + describe(cur()));
    }
    void expect_op(const char* s) {
        if (!accept_op(s)) unexpected(std::string("'") + s + "'");
    }
    void expect_block_end() {
        if (cur().type != tok::block_end) unexpected("end of statement block");
        next();
    }
    std::string expect_identifier() {
        if (cur().type != tok::name) unexpected("a name");
        std::string s = cur().s;
        next();
        return s;
    }

    // ---- expressions ----
    expr_ptr make(expr::kind k, int line) {
        auto e = std::make_unique<expr>();
        e->k = k;
        e->line = line;
        return e;
    }
    expr_ptr add(expr_ptr parent, expr_ptr kid) {
        if (kid) {
            parent->depth = std::max(parent->depth, kid->depth + 1);
            if (parent->depth > max_expr_depth) syntax_fail(parent->line, "expression nested too deeply");
        }
        parent->kids.push_back(std::move(kid));
        return parent;
    }
    expr_ptr binary(expr::kind k, const std::string& op, expr_ptr a, expr_ptr b, int line) {
        expr_ptr e = make(k, line);
        e->name = op;
        e = add(std::move(e), std::move(a));
        return add(std::move(e), std::move(b));
    }

    expr_ptr parse_expr(bool with_cond = true) {
        int line = cur().line;
        expr_ptr e = parse_or();
        if (with_cond && is_name("if")) {
            next();
            expr_ptr c = parse_or();
            expr_ptr otherwise;
            if (accept_name("else")) otherwise = parse_expr();
            expr_ptr n = make(expr::kind::cond, line);
            n = add(std::move(n), std::move(e));
            n = add(std::move(n), std::move(c));
            return add(std::move(n), std::move(otherwise));
        }
        return e;
    }
    expr_ptr parse_or() {
        expr_ptr e = parse_and();
        while (is_name("or")) {
            int line = cur().line;
            next();
            e = binary(expr::kind::or_, "or", std::move(e), parse_and(), line);
        }
        return e;
    }
    expr_ptr parse_and() {
        expr_ptr e = parse_not();
        while (is_name("and")) {
            int line = cur().line;
            next();
            e = binary(expr::kind::and_, "and", std::move(e), parse_not(), line);
        }
        return e;
    }
    expr_ptr parse_not() {
        if (is_name("not")) {
            int line = cur().line;
            nest_guard g(*this, line);
            next();
            return add(make(expr::kind::not_, line), parse_not());
        }
        return parse_compare();
    }
    expr_ptr parse_compare() {
        int line = cur().line;
        expr_ptr first = parse_math1();
        expr_ptr cmp;
        for (;;) {
            std::string op;
            if (cur().type == tok::op &&
                (cur().s == "==" || cur().s == "!=" || cur().s == "<" || cur().s == "<=" || cur().s == ">" ||
                 cur().s == ">=")) {
                op = cur().s;
                next();
            } else if (is_name("in")) {
                op = "in";
                next();
            } else if (is_name("not") && peek().type == tok::name && peek().s == "in") {
                op = "notin";
                next();
                next();
            } else {
                break;
            }
            if (!cmp) {
                cmp = make(expr::kind::compare, line);
                cmp = add(std::move(cmp), std::move(first));
            }
            cmp->ops.push_back(op);
            cmp = add(std::move(cmp), parse_math1());
        }
        return cmp ? std::move(cmp) : std::move(first);
    }
    expr_ptr parse_math1() {
        expr_ptr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            std::string op = cur().s;
            int line = cur().line;
            next();
            e = binary(expr::kind::binary, op, std::move(e), parse_concat(), line);
        }
        return e;
    }
    expr_ptr parse_concat() {
        expr_ptr e = parse_math2();
        while (is_op("~")) {
            int line = cur().line;
            next();
            e = binary(expr::kind::binary, "~", std::move(e), parse_math2(), line);
        }
        return e;
    }
    expr_ptr parse_math2() {
        expr_ptr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            std::string op = cur().s;
            int line = cur().line;
            next();
            e = binary(expr::kind::binary, op, std::move(e), parse_pow(), line);
        }
        return e;
    }
    expr_ptr parse_pow() {
        expr_ptr e = parse_unary(true);
        while (is_op("**")) {
            int line = cur().line;
            next();
            e = binary(expr::kind::binary, "**", std::move(e), parse_unary(true), line);
        }
        return e;
    }
    expr_ptr parse_unary(bool with_filter) {
        int line = cur().line;
        nest_guard g(*this, line);
        expr_ptr e;
        if (is_op("-") || is_op("+")) {
            bool minus = is_op("-");
            next();
            e = add(make(minus ? expr::kind::neg : expr::kind::pos, line), parse_unary(false));
        } else {
            e = parse_postfix(parse_primary());
        }
        if (with_filter) e = parse_filter_expr(std::move(e));
        return e;
    }
    expr_ptr parse_primary() {
        const token& t = cur();
        int line = t.line;
        switch (t.type) {
            case tok::name: {
                expr_ptr e = make(expr::kind::literal, line);
                if (t.s == "true" || t.s == "True") e->lit = value(true);
                else if (t.s == "false" || t.s == "False") e->lit = value(false);
                else if (t.s == "none" || t.s == "None") e->lit = value::none();
                else {
                    e->k = expr::kind::name;
                    e->name = t.s;
                }
                next();
                return e;
            }
            case tok::string: {
                std::string s;
                while (cur().type == tok::string) {  // adjacent literals concatenate
                    s += cur().s;
                    next();
                }
                expr_ptr e = make(expr::kind::literal, line);
                e->lit = value(std::move(s));
                return e;
            }
            case tok::integer: {
                expr_ptr e = make(expr::kind::literal, line);
                e->lit = value(t.i);
                next();
                return e;
            }
            case tok::floating: {
                expr_ptr e = make(expr::kind::literal, line);
                e->lit = value(t.d);
                next();
                return e;
            }
            case tok::op:
                if (t.s == "(") {
                    next();
                    if (accept_op(")")) {  // empty tuple
                        expr_ptr e = make(expr::kind::list, line);
                        e->name = "tuple";
                        return e;
                    }
                    expr_ptr e = parse_expr();
                    if (is_op(",")) {
                        expr_ptr tup = make(expr::kind::list, line);
                        tup->name = "tuple";
                        tup = add(std::move(tup), std::move(e));
                        while (accept_op(",")) {
                            if (is_op(")")) break;
                            tup = add(std::move(tup), parse_expr());
                        }
                        e = std::move(tup);
                    }
                    expect_op(")");
                    return e;
                }
                if (t.s == "[") {
                    next();
                    expr_ptr e = make(expr::kind::list, line);
                    while (!is_op("]")) {
                        e = add(std::move(e), parse_expr());
                        if (!accept_op(",")) break;
                    }
                    expect_op("]");
                    return e;
                }
                if (t.s == "{") {
                    next();
                    expr_ptr e = make(expr::kind::dict, line);
                    while (!is_op("}")) {
                        e = add(std::move(e), parse_expr());
                        expect_op(":");
                        e = add(std::move(e), parse_expr());
                        if (!accept_op(",")) break;
                    }
                    expect_op("}");
                    return e;
                }
                break;
            default: break;
        }
        unexpected("an expression");
    }
    expr_ptr parse_postfix(expr_ptr e) {
        for (;;) {
            int line = cur().line;
            if (is_op(".")) {
                next();
                if (cur().type == tok::name) {
                    expr_ptr n = make(expr::kind::attr, line);
                    n->name = cur().s;
                    next();
                    e = add(std::move(n), std::move(e));
                } else if (cur().type == tok::integer) {
                    expr_ptr idx = make(expr::kind::literal, line);
                    idx->lit = value(cur().i);
                    next();
                    expr_ptr n = add(make(expr::kind::item, line), std::move(e));
                    e = add(std::move(n), std::move(idx));
                } else {
                    unexpected("an attribute name");
                }
            } else if (is_op("[")) {
                next();
                e = parse_subscript(std::move(e), line);
            } else if (is_op("(")) {
                e = parse_call(make(expr::kind::call, line), std::move(e));
            } else {
                return e;
            }
        }
    }
    expr_ptr parse_subscript(expr_ptr obj, int line) {
        expr_ptr parts[3];
        bool is_slice = false;
        if (!is_op(":")) parts[0] = parse_expr();
        if (accept_op(":")) {
            is_slice = true;
            if (!is_op(":") && !is_op("]")) parts[1] = parse_expr();
            if (accept_op(":") && !is_op("]")) parts[2] = parse_expr();
        }
        expect_op("]");
        if (!is_slice) return add(add(make(expr::kind::item, line), std::move(obj)), std::move(parts[0]));
        expr_ptr n = add(make(expr::kind::slice, line), std::move(obj));
        for (auto& p : parts) n = add(std::move(n), std::move(p));
        return n;
    }
    // Appends "(args)" to `node` whose kids[0] is `subject`.
    expr_ptr parse_call(expr_ptr node, expr_ptr subject) {
        node = add(std::move(node), std::move(subject));
        expect_op("(");
        while (!is_op(")")) {
            if (cur().type == tok::name && peek().type == tok::op && peek().s == "=") {
                node->kw_names.push_back(cur().s);
                next();
                next();
                node = add(std::move(node), parse_expr());
            } else {
                if (!node->kw_names.empty()) syntax_fail(cur().line, "positional argument follows keyword argument");
                node = add(std::move(node), parse_expr());
                ++node->n_pos;
            }
            if (!accept_op(",")) break;
        }
        expect_op(")");
        return node;
    }
    // One filter application "name" or "name(args)" on `input` (null: {% filter %} block text).
    expr_ptr parse_filter(expr_ptr input) {
        int line = cur().line;
        expr_ptr n = make(expr::kind::filter, line);
        n->name = expect_identifier();
        while (accept_op(".")) n->name += "." + expect_identifier();
        if (is_op("(")) return parse_call(std::move(n), std::move(input));
        return add(std::move(n), std::move(input));
    }
    expr_ptr parse_filter_expr(expr_ptr e) {
        for (;;) {
            if (is_op("|")) {
                next();
                e = parse_filter(std::move(e));
            } else if (is_name("is")) {
                int line = cur().line;
                next();
                expr_ptr n = make(expr::kind::test, line);
                n->negate = accept_name("not");
                n->name = expect_identifier();
                if (is_op("(")) {
                    e = parse_call(std::move(n), std::move(e));
                } else if ((cur().type == tok::name || cur().type == tok::string || cur().type == tok::integer ||
                            cur().type == tok::floating || is_op("[") || is_op("{")) &&
                           !is_name("else") && !is_name("or") && !is_name("and") && !is_name("is") &&
                           !is_name("if")) {
                    // "is divisibleby 3": one argument without parentheses.
                    n = add(std::move(n), std::move(e));
                    n = add(std::move(n), parse_postfix(parse_primary()));
                    n->n_pos = 1;
                    e = std::move(n);
                } else {
                    e = add(std::move(n), std::move(e));
                }
            } else if (is_op("(")) {
                int line = cur().line;
                e = parse_call(make(expr::kind::call, line), std::move(e));
            } else {
                return e;
            }
        }
    }

    // ---- statements ----
    // Parses statements until a block tag named in `ends`; consumes "{%" and that name, stores it in *end.
    stmt_list parse_until(std::initializer_list<const char*> ends, std::string* end) {
        stmt_list out;
        for (;;) {
            const token& t = cur();
            if (t.type == tok::eof) {
                if (ends.size() == 0) return out;
                syntax_fail(t.line, std::string("unexpected end of template, expected '") + *ends.begin() + "'");
            }
            if (t.type == tok::text) {
                auto s = std::make_unique<stmt>();
                s->k = stmt::kind::text;
                s->line = t.line;
                s->text = t.s;
                out.push_back(std::move(s));
                next();
                continue;
            }
            if (t.type == tok::var_begin) {
                auto s = std::make_unique<stmt>();
                s->k = stmt::kind::output;
                s->line = t.line;
                next();
                s->e = parse_expr();
                if (cur().type != tok::var_end) unexpected("end of print statement");
                next();
                out.push_back(std::move(s));
                continue;
            }
            if (t.type != tok::block_begin) unexpected("template text or a tag");
            next();
            if (cur().type != tok::name) unexpected("a tag name");
            for (const char* e : ends) {
                if (cur().s == e) {
                    *end = e;
                    next();
                    return out;
                }
            }
            out.push_back(parse_statement());
        }
    }

    stmt_ptr new_stmt(stmt::kind k, int line) {
        auto s = std::make_unique<stmt>();
        s->k = k;
        s->line = line;
        return s;
    }

    stmt_ptr parse_statement() {
        int line = cur().line;
        nest_guard g(*this, line);
        std::string tag = cur().s;
        next();
        std::string end;
        if (tag == "if") return parse_if_rest(line);
        if (tag == "for") {
            stmt_ptr s = new_stmt(stmt::kind::for_, line);
            bool paren = accept_op("(");
            s->targets.push_back(expect_identifier());
            while (accept_op(",")) {
                if (is_op(")") || is_name("in")) break;
                s->targets.push_back(expect_identifier());
            }
            if (paren) expect_op(")");
            if (!accept_name("in")) unexpected("'in'");
            s->e = parse_expr(false);
            if (is_op(",")) {  // for x in a, b: a tuple
                expr_ptr tup = add(make(expr::kind::list, line), std::move(s->e));
                while (accept_op(",")) {
                    if (cur().type == tok::block_end || is_name("if")) break;
                    tup = add(std::move(tup), parse_expr(false));
                }
                s->e = std::move(tup);
            }
            if (accept_name("if")) s->cond = parse_expr();
            if (is_name("recursive")) syntax_fail(cur().line, "recursive loops are not supported");
            expect_block_end();
            ++loop_depth_;
            s->body = parse_until({"else", "endfor"}, &end);
            --loop_depth_;
            if (end == "else") {
                expect_block_end();
                s->else_body = parse_until({"endfor"}, &end);
            }
            expect_block_end();
            return s;
        }
        if (tag == "set") {
            stmt_ptr s = new_stmt(stmt::kind::set, line);
            s->targets.push_back(expect_identifier());
            if (accept_op(".")) {
                s->attr = expect_identifier();
            } else {
                while (accept_op(",")) s->targets.push_back(expect_identifier());
            }
            if (accept_op("=")) {
                s->e = parse_expr();
                if (is_op(",")) {  // set x = 1, 2: a tuple
                    expr_ptr tup = add(make(expr::kind::list, line), std::move(s->e));
                    while (accept_op(",")) {
                        if (cur().type == tok::block_end) break;
                        tup = add(std::move(tup), parse_expr());
                    }
                    s->e = std::move(tup);
                }
                expect_block_end();
                return s;
            }
            if (s->targets.size() != 1 || !s->attr.empty()) unexpected("'='");
            s->k = stmt::kind::set_block;
            if (accept_op("|")) s->e = parse_filter_chain();
            expect_block_end();
            s->body = parse_until({"endset"}, &end);
            expect_block_end();
            return s;
        }
        if (tag == "macro") {
            stmt_ptr s = new_stmt(stmt::kind::macro, line);
            s->name = expect_identifier();
            expect_op("(");
            while (!is_op(")")) {
                macro_param p;
                p.name = expect_identifier();
                if (accept_op("=")) p.default_value = parse_expr();
                else if (!s->params.empty() && s->params.back().default_value)
                    syntax_fail(cur().line, "non-default argument follows default argument");
                s->params.push_back(std::move(p));
                if (!accept_op(",")) break;
            }
            expect_op(")");
            expect_block_end();
            int saved = loop_depth_;
            loop_depth_ = 0;
            s->body = parse_until({"endmacro"}, &end);
            loop_depth_ = saved;
            expect_block_end();
            return s;
        }
        if (tag == "call") {
            stmt_ptr s = new_stmt(stmt::kind::call_block, line);
            if (is_op("(")) syntax_fail(line, "call blocks with caller arguments are not supported");
            s->e = parse_expr();
            if (s->e->k != expr::kind::call) syntax_fail(line, "expected a call after 'call'");
            expect_block_end();
            s->body = parse_until({"endcall"}, &end);
            expect_block_end();
            return s;
        }
        if (tag == "filter") {
            stmt_ptr s = new_stmt(stmt::kind::filter_block, line);
            s->e = parse_filter_chain();
            expect_block_end();
            s->body = parse_until({"endfilter"}, &end);
            expect_block_end();
            return s;
        }
        if (tag == "generation") {
            // transformers' {% generation %} marks assistant text for masks; rendering keeps the body.
            stmt_ptr s = new_stmt(stmt::kind::if_, line);
            s->e = make(expr::kind::literal, line);
            s->e->lit = value(true);
            expect_block_end();
            s->body = parse_until({"endgeneration"}, &end);
            expect_block_end();
            return s;
        }
        if (tag == "break" || tag == "continue") {
            if (loop_depth_ == 0) syntax_fail(line, "'" + tag + "' outside of a loop");
            expect_block_end();
            return new_stmt(tag == "break" ? stmt::kind::break_ : stmt::kind::continue_, line);
        }
        syntax_fail(line, "encountered unknown tag '" + tag + "'");
    }

    expr_ptr parse_filter_chain() {
        expr_ptr e = parse_filter(nullptr);
        while (accept_op("|")) e = parse_filter(std::move(e));
        return e;
    }

    // After "if" / "elif": condition, body, then elif/else/endif.
    stmt_ptr parse_if_rest(int line) {
        stmt_ptr s = new_stmt(stmt::kind::if_, line);
        s->e = parse_expr();
        expect_block_end();
        std::string end;
        s->body = parse_until({"elif", "else", "endif"}, &end);
        if (end == "elif") {
            nest_guard g(*this, line);
            s->else_body.push_back(parse_if_rest(cur().line));
            return s;
        }
        if (end == "else") {
            expect_block_end();
            s->else_body = parse_until({"endif"}, &end);
        }
        expect_block_end();
        return s;
    }
};

}  // namespace

stmt_list parse_template(std::string_view source) { return parser(lex(source)).run(); }

}  // namespace tfu::chat
