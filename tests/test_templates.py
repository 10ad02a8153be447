"""Template rendering: the shipped SQL (golden files), one-line single statements, object keys and the body."""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
import pytest

from shared.core.config import Config, parse_config
from shared.core.environment import load_config
from shared.core.errors import ConfigError, TemplateError
from shared.core.templates import Templates, _one_line, export_request_body, export_uri
from shared.core.windows import Window
from tests.golden import assert_golden

REPO = Path(__file__).resolve().parent.parent
WINDOW = Window(pendulum.datetime(2026, 3, 4, 5, tz="UTC"), pendulum.datetime(2026, 3, 4, 6, tz="UTC"))


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config({"CDC_CONFIG_FILE": str(REPO / "local" / "demo_config.json")})


def custom(tmp_path: Path, files: dict[str, str], **source: object) -> tuple[Templates, Config]:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    doc = json.loads((REPO / "local" / "demo_config.json").read_text())
    doc["sources"][0].update(source)
    return Templates(tmp_path), parse_config(doc)


@pytest.mark.parametrize("table", ["orders", "payments", "shipments", "page_views"])
def test_demo_table_queries_match_golden(demo: Config, table: str) -> None:
    sql = Templates().render_query(demo.sources[0], table, WINDOW)
    assert "\n" not in sql and not sql.endswith(";")
    assert "event_timestamp >= TIMESTAMPTZ '2026-03-04T05:00:00+00:00'" in sql
    assert "event_timestamp < TIMESTAMPTZ '2026-03-04T06:00:00+00:00'" in sql
    assert "SELECT *" not in sql and "AT TIME ZONE" not in sql
    assert_golden(f"sql/{table}.sql", sql + "\n")


def test_demo_schema_query_matches_golden(demo: Config) -> None:
    sql = Templates().render_schema_query(demo.sources[0], WINDOW)
    assert "table_name IN ('orders', 'payments', 'shipments', 'page_views')" in sql
    assert sql.endswith("ORDER BY table_name, ordinal_position")
    assert_golden("sql/schema.sql", sql + "\n")


def test_demo_keys_match_golden(demo: Config) -> None:
    t, source = Templates(), demo.sources[0]
    keys = [
        *(t.object_key(demo, source, table, WINDOW) for table in source.table_names),
        t.object_key(demo, source, None, WINDOW),
        t.object_key(demo, source, "orders", WINDOW, generation=2),
        t.object_key(demo, source, None, WINDOW, generation=3),
        t.manifest_key(demo, source, WINDOW),
    ]
    assert keys[0] == "cdc/raw/orders/2026/03/04/orders_20260304T050000.csv"
    assert keys[-4:] == [
        "cdc/schemas/shop/2026/03/04/schema_20260304T050000.csv",
        "cdc/raw/orders/2026/03/04/orders_20260304T050000.g2.csv",
        "cdc/schemas/shop/2026/03/04/schema_20260304T050000.g3.csv",
        "cdc/manifests/shop/2026/03/04/20260304T050000/_manifest.json",
    ]
    assert_golden("keys.txt", "\n".join(keys) + "\n")


def test_gzip_extension_and_generation(tmp_path: Path, demo: Config) -> None:
    _, config = custom(tmp_path, {}, csv={"gzip": True})
    key = Templates().object_key(config, config.sources[0], "orders", WINDOW, generation=2)
    assert key == "cdc/raw/orders/2026/03/04/orders_20260304T050000.g2.csv.gz"
    with pytest.raises(TemplateError) as e:
        Templates().object_key(demo, demo.sources[0], "orders", WINDOW, generation=0)
    assert e.value.template == "keys/table.j2" and "generation 0" in e.value.reason


def test_export_uri_and_request_body(demo: Config) -> None:
    source = demo.sources[0]
    uri = export_uri(demo, "cdc/x.csv")
    assert uri == Templates.export_uri(demo, "cdc/x.csv") == "gs://cdc-exports/cdc/x.csv"
    assert export_request_body(source, "SELECT 1", uri, True) == {
        "exportContext": {
            "fileType": "CSV",
            "uri": "gs://cdc-exports/cdc/x.csv",
            "databases": ["shop"],
            "offload": True,
            "csvExportOptions": {
                "selectQuery": "SELECT 1",
                "escapeCharacter": "22",
                "quoteCharacter": "22",
                "fieldsTerminatedBy": "2C",
            },
        }
    }
    assert export_request_body(source, "SELECT 1", uri, source.offload)["exportContext"]["offload"] is False


def test_context_has_exactly_the_documented_names(tmp_path: Path) -> None:
    text = (
        "SELECT '{{ low_watermark.isoformat() }}', '{{ high_watermark.isoformat() }}', "
        "'{{ execution_date.isoformat() }}', '{{ ts_nodash }}', '{{ ds }}', '{{ table }}', '{{ database }}', "
        "'{{ schema }}', '{{ tables | join(',') }}', '{{ params.watermark_column }}', '{{ params.extra }}'"
    )
    t, config = custom(tmp_path, {"orders.sql": text})
    sql = t.render_query(config.sources[0], "orders", WINDOW, params={"extra": "x"})
    assert sql == (
        "SELECT '2026-03-04T05:00:00+00:00', '2026-03-04T06:00:00+00:00', '2026-03-04T05:00:00+00:00', "
        "'20260304T050000', '2026-03-04', 'orders', 'shop', 'public', 'orders,payments,shipments,page_views', "
        "'event_timestamp', 'x'"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SELECT {{ nope }}", "undefined variable: 'nope' is undefined"),
        ("SELECT '{{ params.nope }}'", "undefined variable"),
        ("   \n  ", "renders an empty query"),
        ("{# nothing #}", "renders an empty query"),
        ("-- only a comment\n;", "renders an empty query"),
        ("SELECT 1; SELECT 2", "renders a second statement"),
        ("SELECT 1;\nDROP TABLE orders;", "renders a second statement"),
        ("DELETE FROM orders", "does not start with SELECT or WITH"),
        ("SELECTED FROM x", "does not start with SELECT or WITH"),
        ("SELECT 'unterminated", "unterminated ' literal"),
        ("SELECT 'two\nlines'", "string literal spanning lines"),
        ("SELECT 1 /* open", "unterminated /* comment"),
        ("SELECT {% if %}", "syntax error at line 1"),
        ("SELECT {{ 1 // 0 }}", "failed to render: ZeroDivisionError"),
    ],
)
def test_bad_renders_name_the_template_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    t, config = custom(tmp_path, {"orders.sql": text})
    with pytest.raises(TemplateError) as e:
        t.render_query(config.sources[0], "orders", WINDOW)
    assert e.value.template == "orders.sql"
    assert reason in e.value.reason


def test_missing_template(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {})
    with pytest.raises(TemplateError) as e:
        t.render_query(config.sources[0], "orders", WINDOW)
    assert e.value.template == "orders.sql" and "does not exist" in e.value.reason


def test_schema_query_has_no_table_variable(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {"s.sql": "SELECT '{{ table }}'"}, schema_template="s.sql")
    with pytest.raises(TemplateError) as e:
        t.render_schema_query(config.sources[0], WINDOW)
    assert e.value.template == "s.sql" and "'table' is undefined" in e.value.reason


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("  select\n  a,\tb\nfrom t ;  \n", "select a, b from t"),
        ("SELECT 'a;b', \"c;d\" FROM t;", "SELECT 'a;b', \"c;d\" FROM t"),
        ("SELECT 'it''s; -- not a comment' FROM t", "SELECT 'it''s; -- not a comment' FROM t"),
        ("SELECT E'a\\'; b' FROM t", "SELECT E'a\\'; b' FROM t"),
        ("SELECT $x$a; b$x$, $$c;$$ FROM t", "SELECT $x$a; b$x$, $$c;$$ FROM t"),
        ("SELECT a -- trailing; comment\nFROM t", "SELECT a FROM t"),
        ("SELECT /* ; */ a FROM t", "SELECT a FROM t"),
        ("SELECT a::text, '  two  spaces  ' FROM t", "SELECT a::text, '  two  spaces  ' FROM t"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        # a comment is a word break, at the end of the text too
        ("SELECT a--c\nFROM t", "SELECT a FROM t"),
        ("SELECT a FROM t --last", "SELECT a FROM t"),
        ("--first\nSELECT a FROM t", "SELECT a FROM t"),
        ("SELECT a/*c*/FROM t", "SELECT a FROM t"),
        ("SELECT a /**/ FROM t", "SELECT a FROM t"),
        ("SELECT a /* x */*/ FROM t", "SELECT a */ FROM t"),
        ("SELECT a -- x\n-- y\nFROM t", "SELECT a FROM t"),
        ("SELECT 1 /*a*/ /*b*/ FROM t", "SELECT 1 FROM t"),
        # quotes glue to their neighbours exactly as written
        ("SELECT a||'x'||b FROM t", "SELECT a||'x'||b FROM t"),
        ('SELECT "a b".c FROM t', 'SELECT "a b".c FROM t'),
        ('SELECT "x""y" FROM t', 'SELECT "x""y" FROM t'),
        ("SELECT e'a\\'b' FROM t", "SELECT e'a\\'b' FROM t"),
        ("SELECT E'\\\\' FROM t", "SELECT E'\\\\' FROM t"),
        ("SELECT name'x' FROM t", "SELECT name'x' FROM t"),
        ("SELECT e'', 'it''s' FROM t", "SELECT e'', 'it''s' FROM t"),
        ("SELECT 'a''' FROM t", "SELECT 'a''' FROM t"),
        ("SELECT $1, a$b FROM t", "SELECT $1, a$b FROM t"),
        ("SELECT $$a$$||$t$b$t$ FROM t", "SELECT $$a$$||$t$b$t$ FROM t"),
        ("select 1;", "select 1"),
        ("select 1 ; -- done\n", "select 1"),
    ],
)
def test_one_line_keeps_literals_and_drops_comments(sql: str, expected: str) -> None:
    assert _one_line(sql) == expected


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT 1; SELECT 2", "renders a second statement after ';'"),
        ("SELECT a /* open", "has an unterminated /* comment"),
        ("SELECT a /*/ FROM t", "has an unterminated /* comment"),
        ("SELECT 'abc", "has an unterminated ' literal starting \"'abc\""),
        ("SELECT a, 'abcdefghijklmnopqrstuvwxyz", "has an unterminated ' literal starting \"'abcdefghijklmnopqrs\""),
        ("SELECT E'abc\\'", "has an unterminated ' literal starting \"E'abc\\\\'\""),
        ('SELECT "abc', "has an unterminated \" literal starting '\"abc'"),
        ("SELECT $q$abc", "has an unterminated $q$ literal"),
        ("SELECT 'a\nb' FROM t", "has a string literal spanning lines: \"'a\\nb'\""),
        ("SELECT $$a\rb$$ FROM t", "has a string literal spanning lines: '$$a\\rb$$'"),
        ("  -- only a comment\n", "renders an empty query"),
        ("", "renders an empty query"),
        ("DELETE FROM t", "does not start with SELECT or WITH: 'DELETE FROM t'"),
        ("selection FROM t", "does not start with SELECT or WITH: 'selection FROM t'"),
    ],
)
def test_one_line_rejects_what_is_not_one_statement(sql: str, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        _one_line(sql)
    assert str(e.value) == reason


def test_bad_key_layouts(tmp_path: Path, demo: Config) -> None:
    from dataclasses import replace

    from shared.core.config import KeyLayout

    t = Templates(tmp_path)
    for name, text, reason in [
        ("keys/space.j2", "cdc/raw/{{ table }} x", "not an object key"),
        ("keys/slash.j2", "/cdc/{{ table }}", "not an object key"),
        ("keys/dots.j2", "cdc/../{{ table }}", "'.' or '..' segment"),
        ("keys/undef.j2", "cdc/{{ nope }}", "undefined variable"),
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
        config = replace(demo, layout=KeyLayout(table=name))
        with pytest.raises(TemplateError) as e:
            t.object_key(config, config.sources[0], "orders", WINDOW)
        assert e.value.template == name and reason in e.value.reason


def test_output_columns_that_cannot_be_known_are_refused_naming_the_column(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {"orders.sql": "SELECT id, lower(note) FROM {{ schema }}.orders"})
    with pytest.raises(TemplateError) as e:
        t.output_shape(config.sources[0], "orders", WINDOW)
    assert e.value.template == "orders.sql" and "output column 2 (LOWER(note))" in e.value.reason
    assert "::text AS lower" in e.value.reason
    with pytest.raises(TemplateError):
        t.validate(config)


# --- keys at their bounds, the verify key, the verify query's context, validation ----------------------------------


def test_verify_key_extension_and_generation(tmp_path: Path, demo: Config) -> None:
    source = demo.sources[0]
    assert Templates().verify_key(demo, source, "orders", WINDOW) == (
        "cdc/verify/shop/orders/20260304T050000_20260304T060000.csv"
    )
    _, gz = custom(tmp_path, {}, csv={"gzip": True})
    assert Templates().verify_key(gz, gz.sources[0], "orders", WINDOW, generation=3) == (
        "cdc/verify/shop/orders/20260304T050000_20260304T060000.g3.csv.gz"
    )
    assert Templates().manifest_key(demo, source, WINDOW, version=2).endswith("/_manifest.v2.json")


@pytest.mark.parametrize(("generation", "shown"), [(0, "0"), (-1, "-1"), (True, "True"), (1.0, "1.0")])
def test_generations_and_versions_must_be_positive_integers(demo: Config, generation: object, shown: str) -> None:
    source = demo.sources[0]
    with pytest.raises(TemplateError) as e:
        Templates().object_key(demo, source, "orders", WINDOW, generation=generation)  # type: ignore[arg-type]
    assert e.value.reason == f"generation {shown} is not a positive integer"
    with pytest.raises(TemplateError) as e:
        Templates().manifest_key(demo, source, WINDOW, version=generation)  # type: ignore[arg-type]
    assert (e.value.template, e.value.reason) == ("keys/manifest.j2", f"version {shown} is not a positive integer")


def test_key_length_leaves_room_for_the_generation_and_extension(tmp_path: Path, demo: Config) -> None:
    from dataclasses import replace

    from shared.core.config import KeyLayout

    for length, ok in [(992, True), (993, False)]:
        name = f"keys/long{length}.j2"
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a" * length)
        config = replace(demo, layout=KeyLayout(table=name))
        if ok:
            assert Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW) == "a" * 992 + ".csv"
        else:
            with pytest.raises(TemplateError) as e:
                Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW)
            assert e.value.reason == (
                f"renders {'a' * 80!r}, not an object key (segments of A-Z a-z 0-9 _ . = + - joined by '/', "
                "no leading, trailing or double '/', no spaces)"
            )
    for text, segment in [("cdc/./x", "."), ("cdc/x/..", "..")]:
        (tmp_path / "keys/dot.j2").write_text(text)
        config = replace(demo, layout=KeyLayout(table="keys/dot.j2"))
        with pytest.raises(TemplateError) as e:
            Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW)
        assert e.value.reason == f"renders {text!r}, which has a '.' or '..' segment", segment
    (tmp_path / "keys/dots.j2").write_text("cdc/.../x.y")
    config = replace(demo, layout=KeyLayout(table="keys/dots.j2"))
    assert Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW) == "cdc/.../x.y.csv"


def test_the_verify_query_spans_the_first_to_the_last_window(tmp_path: Path) -> None:
    text = (
        "SELECT '{{ low_watermark }}', '{{ high_watermark }}', {{ windows | length }}, '{{ database }}', '{{ schema }}'"
    )
    t, config = custom(
        tmp_path, {"v.sql": text + ", '{{ tables | join(',') }}', '{{ params.watermark_column }}', '{{ table }}'"}
    )
    source = config.sources[0]
    windows = [Window(WINDOW.low.add(hours=h), WINDOW.high.add(hours=h)) for h in range(3)]
    from dataclasses import replace

    table = replace(source.table("orders"), verify_template="v.sql")
    assert t.render_verify_query(source, table, windows) == (
        "SELECT '2026-03-04 05:00:00+00:00', '2026-03-04 08:00:00+00:00', 3, 'shop', 'public', "
        "'orders,payments,shipments,page_views', 'event_timestamp', 'orders'"
    )


def test_values_are_not_html_escaped(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {"q.sql": "SELECT '{{ params.x }}' FROM {{ table }}"})
    from dataclasses import replace

    source = config.sources[0]
    table = replace(source.table("orders"), template="q.sql", params={"x": "a<b&c"})
    assert t.render_query(source, table, WINDOW) == "SELECT 'a<b&c' FROM orders"


def test_a_query_that_is_not_one_statement_names_the_template_and_the_rule(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {"two.sql": "SELECT 1; SELECT 2"})
    from dataclasses import replace

    source = config.sources[0]
    with pytest.raises(TemplateError) as e:
        t.render_query(source, replace(source.table("orders"), template="two.sql"), WINDOW)
    assert (e.value.template, e.value.reason) == ("two.sql", "renders a second statement after ';'")
    assert e.value.hint == "a template must render exactly one SELECT statement"


def test_the_schema_query_sees_the_database_schema_tables_and_params(tmp_path: Path) -> None:
    t, config = custom(
        tmp_path,
        {"s.sql": "SELECT '{{ database }}', '{{ schema }}', '{{ tables | join(',') }}', {{ params | length }}"},
        schema_template="s.sql",
    )
    assert t.render_schema_query(config.sources[0], WINDOW, {"p": 7}) == (
        "SELECT 'shop', 'public', 'orders,payments,shipments,page_views', 1"
    )
    assert t.render_schema_query(config.sources[0], WINDOW).endswith(", 0")


def test_a_table_whose_columns_cannot_be_known_names_its_template(tmp_path: Path) -> None:
    t, config = custom(tmp_path, {"star.sql": "SELECT a FROM {{ table }} UNION SELECT b FROM {{ table }}"})
    from dataclasses import replace

    source = config.sources[0]
    with pytest.raises(TemplateError) as e:
        t.output_shape(source, replace(source.table("orders"), template="star.sql"), WINDOW)
    assert e.value.template == "star.sql"
    assert e.value.reason == "is not a single SELECT whose output columns can be read (a UNION, or no SELECT)"
    assert e.value.hint == "the manifest must name every column of the CSV exactly"


def test_validate_names_the_layout_and_both_owners_of_a_shared_key(tmp_path: Path) -> None:
    import copy
    import shutil

    from shared.core.errors import ConfigError

    doc = json.loads((REPO / "local" / "demo_config.json").read_text())
    second = copy.deepcopy(doc["sources"][0])
    second.update(name="crm", instance="cdc-local:crm-pg", database="crm")
    second["tables"] = [{"name": "contacts", "template": "orders.sql"}]
    doc["sources"].append(second)
    shutil.copytree(REPO / "templates", tmp_path, dirs_exist_ok=True)
    (tmp_path / "keys" / "flat.j2").write_text("{{ root }}/schemas/schema_{{ ts_nodash }}")  # names no source
    doc.setdefault("layout", {})["schema"] = "keys/flat.j2"
    config = parse_config(doc)
    Templates(tmp_path).validate(parse_config({**doc, "sources": doc["sources"][:1]}))  # one source: fine
    with pytest.raises(ConfigError) as e:
        Templates(tmp_path).validate(config)
    assert "layout.schema" in str(e.value)
    assert "for source 'shop' schema and source 'crm' schema" in str(e.value)
    assert "use {{ source }} in the layout" in str(e.value)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a -- x\nFROM t\n", "SELECT a FROM t"),  # a comment ends at the first newline after it
        ("SELECT /* x */ a /* y */ FROM t", "SELECT a FROM t"),  # and at the first */
        ("SELECT $A$;$A$ FROM t", "SELECT $A$;$A$ FROM t"),  # upper-case tags
        ("SELECT $a$x$a$ -- c\n, $a$y$a$ FROM t", "SELECT $a$x$a$ , $a$y$a$ FROM t"),  # a tag ends at its first repeat
        ("SELECT 'a'||'b' FROM t", "SELECT 'a'||'b' FROM t"),
        ("SELECT \"a\"||'b' FROM t", "SELECT \"a\"||'b' FROM t"),
        ("SELECT x, e'\\'', E'\\\\' FROM t", "SELECT x, e'\\'', E'\\\\' FROM t"),
        ("SELECT 'a''b''c' FROM t", "SELECT 'a''b''c' FROM t"),
        ("SELECT a FROM t WHERE b=$1", "SELECT a FROM t WHERE b=$1"),
    ],
)
def test_one_line_ends_each_comment_and_literal_at_its_first_terminator(sql: str, expected: str) -> None:
    assert _one_line(sql) == expected


def test_a_multiline_literal_is_quoted_to_30_characters() -> None:
    literal = "'" + "x" * 40 + "\n'"
    with pytest.raises(ValueError) as e:
        _one_line(f"SELECT {literal} FROM t")
    assert str(e.value) == f"has a string literal spanning lines: {literal[:30]!r}"
    with pytest.raises(ValueError) as e:
        _one_line("SELECT $$" + "y" * 40 + "\r$$ FROM t")
    assert str(e.value) == f"has a string literal spanning lines: {'$$' + 'y' * 28!r}"


def test_an_e_after_a_dollar_quote_is_a_word_not_an_escape_string() -> None:
    # '$' ends a word: the E is an identifier character, so 'b\' is a plain literal that ends at its second quote
    assert _one_line("SELECT $$a$$E'b\\', 'c' FROM t") == "SELECT $$a$$E'b\\', 'c' FROM t"


def test_long_dot_segment_keys_are_quoted_to_80_characters(tmp_path: Path, demo: Config) -> None:
    from dataclasses import replace

    from shared.core.config import KeyLayout

    text = "a" * 100 + "/../x"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/long.j2").write_text(text)
    config = replace(demo, layout=KeyLayout(table="keys/long.j2"))
    with pytest.raises(TemplateError) as e:
        Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW)
    assert e.value.reason == f"renders {'a' * 80!r}, which has a '.' or '..' segment"


def test_key_layouts_see_the_database_and_schema(tmp_path: Path, demo: Config) -> None:
    from dataclasses import replace

    from shared.core.config import KeyLayout

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/db.j2").write_text("{{ root }}/{{ database }}/{{ schema }}/{{ table }}")
    config = replace(demo, layout=KeyLayout(table="keys/db.j2"))
    assert Templates(tmp_path).object_key(config, config.sources[0], "orders", WINDOW) == "cdc/shop/public/orders.csv"


def test_the_schema_snapshot_keeps_the_tables_read_after_a_table_that_cannot_be_read(tmp_path: Path) -> None:
    from dataclasses import replace

    t, config = custom(
        tmp_path,
        {
            "bad.sql": "SELECT a FROM orders UNION SELECT b FROM orders",
            "join.sql": "SELECT p.id, c.name FROM payments p JOIN customers c ON c.id = p.customer_id",
        },
    )
    source = config.sources[0]
    tables = (
        replace(source.table("orders"), template="bad.sql"),
        replace(source.table("payments"), template="join.sql"),
    )
    source = replace(source, tables=tables)
    assert t.snapshot_tables(source, WINDOW) == ("orders", "payments", "customers")


def layout_clash(tmp_path: Path, field: str, text: str, sources: int) -> ConfigError:
    import copy
    import shutil

    doc = json.loads((REPO / "local" / "demo_config.json").read_text())
    second = copy.deepcopy(doc["sources"][0])
    second.update(name="crm", instance="cdc-local:crm-pg", database="crm")
    second["tables"] = [{"name": "contacts", "template": "orders.sql"}]
    doc["sources"] = [*doc["sources"], second][:sources]
    shutil.copytree(REPO / "templates", tmp_path, dirs_exist_ok=True)
    (tmp_path / "keys" / "flat.j2").write_text(text)
    doc.setdefault("layout", {})[field] = "keys/flat.j2"
    with pytest.raises(ConfigError) as e:
        Templates(tmp_path).validate(parse_config(doc))
    return e.value


def test_validate_names_a_manifest_clash_and_a_table_clash_by_their_owners(tmp_path: Path) -> None:
    e = layout_clash(tmp_path, "manifest", "{{ root }}/manifests/{{ ts_nodash }}", sources=2)
    assert (e.path, e.value) == ("layout.manifest", "keys/flat.j2")
    assert e.problem == (
        "renders the same key 'cdc/manifests/20260101T000000.json' for source 'shop' manifest and source 'crm' manifest"
    )
    assert e.hint == "use {{ source }} in the layout, e.g. {{ root }}/raw/{{ source }}/{{ table }}/..."
    e = layout_clash(tmp_path, "table", "{{ root }}/raw/{{ ts_nodash }}", sources=1)
    assert (e.path, e.problem) == (
        "layout.table",
        "renders the same key 'cdc/raw/20260101T000000.csv' for shop.orders and shop.payments",
    )
