"""Candidate values for one column, as the text its type's input function reads, most likely first.

Safe, portable values come first (an ``ltree`` label of letters, digits and underscores only, which
every PostgreSQL major accepts), then the literals and patterns the column's CHECKs and domains
name, then whatever else the type might take. The row maker casts each to the column's type before
using it, so a candidate that a type or a domain refuses costs one round trip and is dropped.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import random
import re
import uuid
from dataclasses import dataclass, field

PATH_LABEL = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


@dataclass
class TypeInfo:
    """One type as the catalog describes it, resolved through domains, arrays, ranges and composites."""
    name: str                    # pg_type.typname: 'ltree', 'jsonb', 'int4', ...
    typtype: str                 # b(ase) c(omposite) d(omain) e(num) r(ange) m(ultirange) p(seudo)
    category: str                # pg_type.typcategory
    typmod: int = -1
    not_null: bool = False       # a domain declared NOT NULL
    checks: list[str] = field(default_factory=list)     # a domain's CHECK definitions
    base: TypeInfo | None = None                        # a domain's base type
    element: TypeInfo | None = None                     # an array's element type
    subtype: TypeInfo | None = None                     # a range's subtype
    fields: list[tuple[str, TypeInfo, int]] = field(default_factory=list)  # a composite's (name, type, typmod)
    labels: list[str] = field(default_factory=list)     # an enum's labels

    def root(self) -> TypeInfo:
        return self.base.root() if self.base else self

    def all_checks(self) -> list[str]:
        return self.checks + (self.base.all_checks() if self.base else [])

    def domain_not_null(self) -> bool:
        return self.not_null or bool(self.base and self.base.domain_not_null())


def hints_from(definitions: list[str], rng: random.Random) -> list[str]:
    """Literals a CHECK names: quoted strings, numbers, and strings matching its regular expressions."""
    found = []
    for definition in definitions:
        for pattern in re.findall(r"~\*?\s*'((?:[^']|'')*)'", definition):
            pattern = pattern.replace("''", "'")
            found += [e for e in (example_for_regex(pattern), example_for_regex(pattern, rng)) if e is not None]
        found += [m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", definition)]
        for number in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", definition):
            found += [number, str(float(number) + 1) if "." in number else str(int(number) + 1)]
    return list(dict.fromkeys(found))


def values_for(t: TypeInfo, hints: list[str], rng: random.Random, typmod: int = -1) -> list[str]:
    """Text candidates for type ``t`` (never NULL, never DEFAULT: the row maker adds those)."""
    if t.typtype == "d":
        own = hints_from(t.checks, rng)
        return values_for(t.base, own + hints, rng, t.typmod if t.typmod != -1 else typmod)
    if t.labels:
        return list(dict.fromkeys([h for h in hints if h in t.labels] + t.labels))
    if t.element is not None:
        return _arrays(values_for(t.element, hints, rng, typmod))
    if t.subtype is not None:
        return _ranges(t.subtype, hints, rng)
    if t.fields:
        return _composites([values_for(ft, [], rng, fmod) for _, ft, fmod in t.fields])
    return _base_values(t, hints, rng, typmod)


def quote(text: str) -> str:
    """One element of an array, field of a composite or bound of a range, always double-quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _arrays(elements: list[str]) -> list[str]:
    found = [f"{{{quote(e)}}}" for e in elements[:2]] + ["{}"]
    if len(elements) > 1:
        found.append(f"{{{quote(elements[0])},{quote(elements[1])}}}")
    return found


def _composites(per_field: list[list[str]]) -> list[str]:
    first = ",".join(quote(v[0]) if v else "" for v in per_field)
    second = ",".join(quote(v[1 % len(v)]) if v else "" for v in per_field)
    return list(dict.fromkeys([f"({first})", f"({second})", "(" + "," * (len(per_field) - 1) + ")"]))


def _ranges(subtype: TypeInfo, hints: list[str], rng: random.Random) -> list[str]:
    """Non-empty, bounded ranges at a random place (an exclusion constraint sees no overlap), then
    the empty and the unbounded range."""
    root = subtype.root()
    found = [h for h in hints if h[:1] in "[(" or h == "empty"]
    if root.name == "date":
        start = dt.date.today() + dt.timedelta(days=rng.randrange(1, 36500))
        found.append(f"[{start},{start + dt.timedelta(days=1)})")
    elif root.category == "D":
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(minutes=rng.randrange(1, 10**7))
        found.append(f'["{start.isoformat()}","{(start + dt.timedelta(hours=1)).isoformat()}")')
    elif root.category == "N":
        start = rng.randrange(1000, 10**6)
        found.append(f"[{start},{start + 10})")
    return found + ["empty", "(,)"]


def _base_values(t: TypeInfo, hints: list[str], rng: random.Random, typmod: int) -> list[str]:
    name, category = t.name, t.category
    token = f"fkrunbook_{uuid.uuid4().hex[:12]}"
    if name == "uuid":
        return [h for h in hints if _is_uuid(h)] + [str(uuid.uuid4())]
    if name in ("json", "jsonb"):
        return _json_values(hints)
    if name == "ltree":  # letters, digits, underscore: the labels every major accepts (15 refuses '-')
        paths = [h for h in hints if PATH_LABEL.match(h)]
        return [f"{p}.{token}" for p in paths] + [token, f"fkrunbook.{token}"] + paths
    if name == "lquery":
        return ["*", token]
    if name == "ltxtquery":
        return [token]
    if name == "hstore":
        return [f'"fkrunbook"=>"{token}"', ""]
    if name in ("vector", "halfvec"):
        dims = typmod if typmod > 0 else 3
        return ["[" + ",".join(["0"] * dims) + "]", "[1]"]
    if name in ("bit", "varbit"):
        size = typmod if typmod > 0 else 1
        return ["1" * size, "0" * size]
    if name in ("bpchar", "varchar", "text", "citext", "name") or category == "S":
        return _texts(hints, rng, typmod - 4 if typmod > 4 and name in ("bpchar", "varchar") else None, token)
    if category == "B":
        return [h for h in hints if h in ("true", "false")] + ["true", "false"]
    if category == "N":
        numbers = [h for h in hints if re.fullmatch(r"-?\d+(\.\d+)?", h)]
        return list(dict.fromkeys(numbers + ["1", "0", str(rng.randrange(1000, 32000)),
                                             str(rng.randrange(10**5, 2**31 - 1))]))
    if category == "D":
        return _datetimes(name, hints)
    if category == "T":
        return ["1 hour", "1 day"]
    if category == "I":
        return ["127.0.0.1", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", "10.0.0.0/8"]
    if category == "G":
        return ["(0,0)", "(0,0),(1,1)", "<(0,0),1>", "{1,-1,0}", "[(0,0),(1,1)]", "((0,0),(1,1),(1,0))"]
    known = {"bytea": ["\\x" + uuid.uuid4().hex[:8]], "tsvector": [token], "tsquery": [token],
             "xml": ["<fkrunbook/>"], "macaddr": ["08:00:2b:01:02:03"], "macaddr8": ["08:00:2b:01:02:03:04:05"],
             "pg_lsn": ["0/0"], "money": ["1"]}
    if name in known:
        return known[name]
    # a type nobody here knows: its CHECK literals, then text of the shapes most types read
    return list(dict.fromkeys(hints + [token, "1", "0", "true", "{}", "[]", "()", "(1)", "", "POINT(0 0)"]))


def _texts(hints: list[str], rng: random.Random, max_length: int | None, token: str) -> list[str]:
    found = list(hints)
    for n in (int(h) for h in hints if re.fullmatch(r"\d{1,2}", h) and 0 < int(h) <= 64):
        found.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)))  # length(x) = n
    found += [token, token.replace("_", "-"), "x"]
    if max_length:  # a fresh value that fits, not a truncated (and so repeated) one
        fresh = uuid.uuid4().hex
        found = [f if len(f) <= max_length else fresh[:max_length] for f in found]
    return list(dict.fromkeys(found))


def _json_values(hints: list[str]) -> list[str]:
    keys = [h for h in hints if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", h)]
    found = ["{}"]
    if keys:
        found += [json.dumps(dict.fromkeys(keys, value)) for value in ("fkrunbook", 1, True)]
    found += ["[]", '"fkrunbook"', "1", "true"]
    return found + [h for h in hints if _is_json(h)]


def _datetimes(name: str, hints: list[str]) -> list[str]:
    now = dt.datetime.now(dt.timezone.utc)
    dates = [h for h in hints if re.match(r"\d{4}-\d{2}-\d{2}", h)]
    if name == "date":
        return dates + [str(now.date()), str(now.date() + dt.timedelta(days=1)), str(now.date() - dt.timedelta(days=1))]
    if name in ("time", "timetz"):
        return ["12:00:00", "13:00:00", "11:00:00"]
    return dates + [now.isoformat(), (now + dt.timedelta(days=1)).isoformat(), (now - dt.timedelta(days=1)).isoformat()]


TOKEN = re.compile(r"(fkrunbook[_-])[0-9a-f]{12}")


def fresh_like(value: str, t: TypeInfo, n: int) -> str | None:
    """A value shaped like ``value`` (one a row was accepted with) but new, for the ``n``-th row
    copied from that one: a new uuid, a new random part of a made-up token, a number, a time or a
    trailing count moved on by ``n``. None when it cannot tell (that row is then made afresh)."""
    root = t.root()
    if root.name == "uuid":
        return str(uuid.uuid4())
    if root.subtype is not None:
        return _shifted_range(value, root.subtype.root(), n)
    if TOKEN.search(value):
        return TOKEN.sub(lambda m: m.group(1) + uuid.uuid4().hex[:12], value)
    if re.fullmatch(r"-?\d+", value):
        return str(int(value) + n)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return str(decimal.Decimal(value) + n)
    if root.category == "D":
        try:
            if root.name == "date":
                return str(dt.date.fromisoformat(value) + dt.timedelta(days=n))
            return (dt.datetime.fromisoformat(value) + dt.timedelta(seconds=n)).isoformat()
        except ValueError:
            return None
    if root.category == "S" or root.typtype == "b" and root.category == "U":
        if re.fullmatch(r"[0-9a-f]{8,}", value):  # a random hex cut to the column's length
            return (uuid.uuid4().hex * (len(value) // 32 + 1))[:len(value)]
        found = re.search(r"\d+(?=\D*$)", value)
        if found:
            number = str(int(found.group()) + n).zfill(len(found.group()))  # C-00042: the width kept
            return value[:found.start()] + number + value[found.end():]
        return f"{value}{n}"
    return None


RANGE = re.compile(r'^([\[(])"?([^,"]+)"?,"?([^,"]+)"?([\])])$')


def _shifted_range(value: str, subtype: TypeInfo, n: int) -> str | None:
    """A bounded range moved ``n`` widths along (so the copies never overlap), or None."""
    found = RANGE.match(value)
    if not found:
        return None
    opening, low, high, closing = found.groups()
    try:
        if subtype.name == "date":
            low, high = dt.date.fromisoformat(low), dt.date.fromisoformat(high)
        elif subtype.category == "D":
            low, high = dt.datetime.fromisoformat(low), dt.datetime.fromisoformat(high)
        elif subtype.category == "N":
            low, high = (int(low), int(high)) if subtype.name in ("int4", "int8") else (float(low), float(high))
        else:
            return None
    except ValueError:
        return None
    step = (high - low) * n
    shifted = [low + step, high + step]
    return f'{opening}"{shifted[0]}","{shifted[1]}"{closing}'


def mutate(value: str, rng: random.Random) -> str | None:
    """The same value with its digits redrawn (a copied code keeps its shape, but not its identity)."""
    changed = re.sub(r"\d", lambda _: str(rng.randrange(10)), value)
    return changed if changed != value else None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def example_for_regex(pattern: str, rng: random.Random | None = None) -> str | None:
    """A short string matching a (simple) regular expression, or None when it cannot tell.
    Without ``rng`` the first such string; with it, one with its characters drawn at random."""
    import re._parser as sre_parse  # Python 3.11+
    from re import _constants as c

    def build(items) -> str:
        out = []
        for op, arg in items:
            if op is c.LITERAL:
                out.append(chr(arg))
            elif op is c.IN:
                out.append(pick(arg))
            elif op is c.NOT_LITERAL:
                out.append(pick([(c.NEGATE, None), (c.LITERAL, arg)]))
            elif op is c.ANY:
                out.append("a")
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
                low, _high, body = arg
                out.append("".join(build(body) for _ in range(max(low, 1))))
            elif op is c.SUBPATTERN:
                out.append(build(arg[-1]))
            elif op is c.BRANCH:
                out.append(build(arg[1][0]))
            elif op is c.AT:
                continue
            else:
                raise ValueError(op)
        return "".join(out)

    def pick(items) -> str:
        choices, negated = [], False
        for op, arg in items:
            if op is c.NEGATE:
                negated = True
            elif op is c.LITERAL:
                choices.append(chr(arg))
            elif op is c.RANGE:
                choices += [chr(x) for x in range(arg[0], arg[1] + 1)]
            elif op is c.CATEGORY:
                choices += {"CATEGORY_DIGIT": list("0123456789"), "CATEGORY_SPACE": [" "]}.get(str(arg), ["a"])
        if negated:  # [^@]: any character the class leaves out
            choices = [ch for ch in "abcxyz0123456789" if ch not in choices]
        if not choices:
            raise ValueError("empty class")
        return rng.choice(choices) if rng else choices[0]

    try:
        example = build(sre_parse.parse(pattern))
        return example if re.search(pattern, example) else None
    except (ValueError, re.error, TypeError):
        return None
