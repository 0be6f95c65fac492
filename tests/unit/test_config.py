"""Config loading, --cfg-options, defaults, checks and dumping (stdlib only, no torch)."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ignite_cls import config
from ignite_cls.config import (
    check_config,
    close_matches,
    dump_config,
    flatten,
    format_config,
    load_config,
    merge,
    setting,
    with_defaults,
)
from ignite_cls.defaults import DEFAULTS
from ignite_cls.errors import UserError
from ignite_cls.overrides import apply_options, parse_cfg_options, parse_value


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------- load_config


def test_load_collects_public_settings_only(tmp_path):
    cfg = write(
        tmp_path / "c.py",
        """
        import os
        from pathlib import Path
        def helper(): return 3
        class Thing: pass
        _private = 1
        seed = helper()
        here = os.path.dirname(__file__)
        name = Path(__file__).stem
        """,
    )
    assert load_config(cfg) == {"seed": 3, "here": str(tmp_path), "name": "c"}


def test_load_accepts_pathlike_and_str(tmp_path):
    cfg = write(tmp_path / "c.py", "seed = 1\n")
    assert load_config(str(cfg)) == load_config(cfg) == {"seed": 1}


def test_base_inheritance_relative_paths_and_list_of_bases(tmp_path):
    write(
        tmp_path / "_base_" / "model.py",
        "model = dict(arch='resnet18', num_classes=10)\nseed = 1\n",
    )
    write(
        tmp_path / "_base_" / "data.py",
        "data = dict(train=dict(batch_size=32, pipeline=[1, 2]))\nseed = 2\n",
    )
    write(tmp_path / "_base_" / "sched.py", "_base_ = 'data.py'\nschedule = dict(max_epochs=5)\n")
    cfg = write(
        tmp_path / "exp" / "run.py",
        """
        _base_ = ['../_base_/model.py', '../_base_/sched.py']
        model = dict(num_classes=100)
        data = dict(train=dict(pipeline=[3]))
        """,
    )
    assert load_config(cfg) == {
        "model": {"arch": "resnet18", "num_classes": 100},  # deep merge
        "seed": 2,  # later base wins
        "data": {"train": {"batch_size": 32, "pipeline": [3]}},  # lists replaced
        "schedule": {"max_epochs": 5},
    }


def test_base_relative_to_including_file_not_cwd(tmp_path, monkeypatch):
    write(tmp_path / "cfgs" / "base.py", "seed = 7\n")
    write(tmp_path / "cfgs" / "child.py", "_base_ = 'base.py'\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("cfgs/child.py") == {"seed": 7}


def test_base_can_be_tuple(tmp_path):
    write(tmp_path / "a.py", "x = 1\n")
    write(tmp_path / "b.py", "y = 2\n")
    cfg = write(tmp_path / "c.py", "_base_ = ('a.py', 'b.py')\n")
    assert load_config(cfg) == {"x": 1, "y": 2}


def test_delete_replaces_inherited_dict(tmp_path):
    write(tmp_path / "base.py", "optimizer = dict(type='SGD', lr=0.1, momentum=0.9)\n")
    cfg = write(
        tmp_path / "c.py",
        "_base_ = 'base.py'\noptimizer = dict(_delete_=True, type='Adam', lr=1e-3)\n",
    )
    assert load_config(cfg) == {"optimizer": {"type": "Adam", "lr": 1e-3}}


def test_delete_key_removed_without_base(tmp_path):
    cfg = write(tmp_path / "c.py", "a = dict(_delete_=True, b=dict(_delete_=True, c=1))\n")
    assert load_config(cfg) == {"a": {"b": {"c": 1}}}


def test_diamond_bases_are_not_a_cycle(tmp_path):
    write(tmp_path / "root.py", "x = 1\n")
    write(tmp_path / "left.py", "_base_ = 'root.py'\nl = 1\n")
    write(tmp_path / "right.py", "_base_ = 'root.py'\nr = 1\n")
    cfg = write(tmp_path / "top.py", "_base_ = ['left.py', 'right.py']\n")
    assert load_config(cfg) == {"x": 1, "l": 1, "r": 1}


def test_base_cycle(tmp_path):
    write(tmp_path / "a.py", "_base_ = 'b.py'\n")
    write(tmp_path / "b.py", "_base_ = './a.py'\n")
    with pytest.raises(UserError) as err:
        load_config(tmp_path / "a.py")
    message = str(err.value)
    assert message.startswith("_base_ cycle: ")
    names = [Path(p).name for p in message.removeprefix("_base_ cycle: ").split(" -> ")]
    assert names == ["a.py", "b.py", "a.py"]


def test_self_base_cycle(tmp_path):
    cfg = write(tmp_path / "a.py", "_base_ = 'a.py'\n")
    with pytest.raises(UserError, match="_base_ cycle: .*a.py -> .*a.py$"):
        load_config(cfg)


def test_missing_base(tmp_path):
    cfg = write(tmp_path / "c.py", "_base_ = ['nope.py']\n")
    with pytest.raises(UserError) as err:
        load_config(cfg)
    assert str(err.value) == f"{cfg}: base config not found: nope.py"


def test_bad_base_type(tmp_path):
    cfg = write(tmp_path / "c.py", "_base_ = 3\n")
    with pytest.raises(UserError, match="_base_ must be a path or a list of paths, got int"):
        load_config(cfg)


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(tmp_path / "missing.py")
    assert str(err.value) == f"config file not found: {tmp_path / 'missing.py'}"


def test_directory_is_not_a_config(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path)


def test_syntax_error_names_file_and_line(tmp_path):
    cfg = write(tmp_path / "c.py", "a = 1\nb = (\nc = 2\n")
    with pytest.raises(UserError) as err:
        load_config(cfg)
    message = str(err.value)
    assert message.startswith(f"{cfg}:")
    assert ": syntax error: " in message
    line = int(message.removeprefix(f"{cfg}:").split(":")[0])
    assert line in (2, 3)  # the line Python blames differs across versions
    assert "\n" not in message


def test_syntax_error_line_exact(tmp_path):
    cfg = write(tmp_path / "c.py", "a = 1\nb = 2\nc = = 3\n")
    with pytest.raises(UserError, match=rf"^{cfg}:3: syntax error: "):
        load_config(cfg)


def test_exception_names_file_and_line(tmp_path):
    cfg = write(tmp_path / "c.py", "a = 1\n\nb = undefined_name\n")
    with pytest.raises(UserError) as err:
        load_config(cfg)
    assert str(err.value) == f"{cfg}:3: NameError: name 'undefined_name' is not defined"


def test_exception_inside_function_uses_config_frame(tmp_path):
    cfg = write(
        tmp_path / "c.py",
        """\
        def f():
            return {}['k']

        x = f()
        """,
    )
    with pytest.raises(UserError) as err:
        load_config(cfg)
    assert str(err.value) == f"{cfg}:2: KeyError: 'k'"


def test_exception_in_base_names_the_base(tmp_path):
    base = write(tmp_path / "base.py", "x = 1 / 0\n")
    cfg = write(tmp_path / "c.py", "_base_ = 'base.py'\n")
    with pytest.raises(UserError, match=rf"^{base}:1: ZeroDivisionError: "):
        load_config(cfg)


def test_multiline_exception_message_is_one_line(tmp_path):
    cfg = write(tmp_path / "c.py", "raise ValueError('first\\nsecond')\n")
    with pytest.raises(UserError) as err:
        load_config(cfg)
    assert str(err.value) == f"{cfg}:1: ValueError: first second"


# ---------------------------------------------------------------- merge


def test_merge_deep_and_lists_replaced():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    override = {"a": {"c": [3]}, "e": 2}
    assert merge(base, override) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}


def test_merge_does_not_mutate_or_share():
    base = {"a": {"b": [1]}}
    override = {"a": {"c": {"d": 1}}, "e": [1]}
    out = merge(base, override)
    out["a"]["b"].append(2)
    out["a"]["c"]["d"] = 5
    out["e"].append(2)
    assert base == {"a": {"b": [1]}}
    assert override == {"a": {"c": {"d": 1}}, "e": [1]}


def test_merge_delete_and_scalar_over_dict():
    base = {"a": {"b": 1, "c": 2}, "x": {"y": 1}, "s": 1}
    override = {"a": {"_delete_": True, "c": 3}, "x": 5, "s": {"t": 1}}
    assert merge(base, override) == {"a": {"c": 3}, "x": 5, "s": {"t": 1}}


def test_merge_delete_false_merges():
    assert merge({"a": {"b": 1}}, {"a": {"_delete_": False, "c": 2}}) == {"a": {"b": 1, "c": 2}}


# ---------------------------------------------------------------- parse_value / parse_cfg_options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("None", None),
        ("none", "none"),  # only None is None: launcher=none stays a string
        ("abc", "abc"),
        ("runs/exp1", "runs/exp1"),
        ("a,b", ["a", "b"]),
        ("1,2", [1, 2]),
        ("1,", [1]),
        ("[a,b]", ["a", "b"]),
        ("[1,2.5,true,None]", [1, 2.5, True, None]),
        ("(1,2)", (1, 2)),
        ("[(a,b),(c,d)]", [("a", "b"), ("c", "d")]),
        ("[[1,2],[3,4]]", [[1, 2], [3, 4]]),
        ("[[1,[2,(3,4)]],5]", [[1, [2, (3, 4)]], 5]),
        ("[1,2],[3,4]", [[1, 2], [3, 4]]),  # commas inside brackets do not split
        ("'x'", "x"),
        ('"x"', "x"),
        ("'[a,b]'", ["a", "b"]),
        ("['a','b']", ["a", "b"]),
        ("'1'", 1),  # quotes are stripped, then the value parsed (as mmengine does)
        ("[]", []),
        ("()", ()),
        ("[[]]", [[]]),
        ("", ""),
        ("[1, 2]", [1, 2]),  # spaces around elements are ignored
        ("hello world", "hello world"),  # but kept inside a string
    ],
)
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, list | tuple):
        assert [type(v) for v in value] == [type(v) for v in expected]


def test_parse_value_keeps_tuple_inside_list():
    assert isinstance(parse_value("[(1,2)]")[0], tuple)


@pytest.mark.parametrize("text", ["[1,2", "1,2]", "[(1,2]", "([1,2)]", "][", "(("])
def test_parse_value_unbalanced(text):
    with pytest.raises(UserError, match=r"unbalanced brackets in "):
        parse_value(text)


def test_parse_cfg_options_in_order():
    options = parse_cfg_options(
        [
            "model.arch=resnet50",
            "data.train.batch_size=64",
            "optimizer.lr=0.01",
            "data.mean=[1,2,3]",
            "schedule.validate=false",
            "model.pretrained=None",
            "x=a=b",  # split on the first '=' only
            "data.train.pipeline.0.size=24",
        ]
    )
    assert list(options.items()) == [
        ("model.arch", "resnet50"),
        ("data.train.batch_size", 64),
        ("optimizer.lr", 0.01),
        ("data.mean", [1, 2, 3]),
        ("schedule.validate", False),
        ("model.pretrained", None),
        ("x", "a=b"),
        ("data.train.pipeline.0.size", 24),
    ]


def test_parse_cfg_options_later_item_wins_and_empty():
    assert parse_cfg_options(["a=1", "a=2"]) == {"a": 2}
    assert parse_cfg_options([]) == {}


def test_parse_cfg_options_single_string():
    assert parse_cfg_options("a.b=1") == {"a.b": 1}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("abc", "expected key=value"),
        ("=1", "empty key"),
        (" =1", "empty key"),
        ("a..b=1", "empty key"),
        (".a=1", "empty key"),
        ("a=[1,2", "unbalanced brackets in '[1,2'"),
    ],
)
def test_parse_cfg_options_malformed(item, problem):
    with pytest.raises(UserError) as err:
        parse_cfg_options(["ok=1", item])
    assert str(err.value) == f"malformed --cfg-options item {item!r}: {problem}"


# ---------------------------------------------------------------- apply_options


def test_apply_options_nested_dicts_lists_and_new_keys():
    cfg = {
        "model": {"arch": "resnet18"},
        "data": {"train": {"pipeline": [{"type": "RandomCrop", "size": 32}, {"type": "Flip"}]}},
        "lst": [[1, 2], [3, 4]],
    }
    out = apply_options(
        cfg,
        {
            "model.arch": "resnet50",
            "data.train.pipeline.0.size": 24,
            "data.train.pipeline.-1.p": 0.5,
            "lst.1.0": 9,
            "new.deeply.nested": [1],
            "seed": 3,
        },
    )
    assert out == {
        "model": {"arch": "resnet50"},
        "data": {
            "train": {"pipeline": [{"type": "RandomCrop", "size": 24}, {"type": "Flip", "p": 0.5}]}
        },
        "lst": [[1, 2], [9, 4]],
        "new": {"deeply": {"nested": [1]}},
        "seed": 3,
    }
    assert cfg["model"]["arch"] == "resnet18"  # input untouched
    assert cfg["data"]["train"]["pipeline"][0]["size"] == 32
    assert cfg["lst"] == [[1, 2], [3, 4]]


def test_apply_options_replaces_whole_list_and_dict():
    out = apply_options({"a": {"b": 1}, "l": [1, 2]}, {"a": 5, "l": [3]})
    assert out == {"a": 5, "l": [3]}


def test_apply_options_value_not_shared():
    value = [1, 2]
    out = apply_options({}, {"a": value})
    value.append(3)
    assert out == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("p.5.size", r"cannot set 'p\.5\.size': index 5 out of range for 'p' \(length 2\)"),
        ("p.2", r"index 2 out of range"),
        ("p.-3", r"index -3 out of range"),
        ("p.x", r"cannot set 'p\.x': 'p' is a list, 'x' is not an index"),
        ("lr.x", r"cannot set 'lr\.x': 'lr' is a float, not a dict or list"),
        ("p.0.size.x", r"cannot set 'p\.0\.size\.x': 'p\.0\.size' is a int"),
        ("t.0", r"cannot set 't\.0': 't' is a tuple"),
        ("none.x", r"'none' is a NoneType"),
    ],
)
def test_apply_options_errors(key, match):
    cfg = {"p": [{"size": 1}, {}], "lr": 0.1, "t": (1, 2), "none": None}
    with pytest.raises(UserError, match=match):
        apply_options(cfg, {key: 1})


def test_options_end_to_end(tmp_path):
    write(
        tmp_path / "base.py", "data = dict(train=dict(pipeline=[dict(type='Resize', size=32)]))\n"
    )
    cfg = write(tmp_path / "c.py", "_base_ = 'base.py'\n")
    options = parse_cfg_options(["data.train.pipeline.0.size=(24,24)", "model.arch=vgg11"])
    out = apply_options(load_config(cfg), options)
    assert out["data"]["train"]["pipeline"][0]["size"] == (24, 24)
    assert out["model"] == {"arch": "vgg11"}


# ---------------------------------------------------------------- with_defaults


def test_with_defaults_fills_everything():
    assert with_defaults({}) == DEFAULTS
    assert with_defaults({}) is not DEFAULTS


def test_with_defaults_user_values_win_and_merge_deep():
    out = with_defaults({"data": {"train": {"batch_size": 64}}, "seed": 5})
    assert out["seed"] == 5
    assert out["data"]["train"]["batch_size"] == 64
    assert out["data"]["train"]["num_workers"] == DEFAULTS["data"]["train"]["num_workers"]
    assert out["data"]["val"] == DEFAULTS["data"]["val"]


def test_with_defaults_open_keys_taken_whole():
    out = with_defaults(
        {
            "optimizer": {"type": "Adam", "lr": 1e-3},
            "schedule": {"max_epochs": 3, "lr_policy": {"type": "cosine"}},
        }
    )
    assert out["optimizer"] == {"type": "Adam", "lr": 1e-3}  # no SGD momentum
    assert out["schedule"]["lr_policy"] == {"type": "cosine"}  # no milestones / gamma
    assert out["schedule"]["max_epochs"] == 3
    assert out["schedule"]["val_interval"] == DEFAULTS["schedule"]["val_interval"]


def test_with_defaults_open_keys_default_when_absent():
    out = with_defaults({"schedule": {"max_epochs": 3}})
    assert out["optimizer"] == DEFAULTS["optimizer"]
    assert out["schedule"]["lr_policy"] == DEFAULTS["schedule"]["lr_policy"]


def test_with_defaults_open_key_drops_delete_and_does_not_share():
    user = {"optimizer": {"_delete_": True, "type": "AdamW", "betas": [0.9, 0.99]}}
    out = with_defaults(user)
    assert out["optimizer"] == {"type": "AdamW", "betas": [0.9, 0.99]}
    out["optimizer"]["betas"].append(1)
    assert user["optimizer"]["betas"] == [0.9, 0.99]


def test_with_defaults_does_not_mutate_defaults():
    snapshot = repr(DEFAULTS)
    out = with_defaults({})
    out["data"]["mean"].append(0)
    out["optimizer"]["lr"] = 5
    assert repr(DEFAULTS) == snapshot


# ---------------------------------------------------------------- check_config


def test_check_config_defaults_are_valid():
    assert check_config(with_defaults({})) == []


def test_check_config_unknown_keys_with_closest():
    cfg = with_defaults(
        {
            "schedule": {"max_epoch": 3},
            "optimizer_lr": 0.1,
            "data": {"train": {"batchsize": 8, "zzzz": 1}},
            "totally_unrelated_thing": 1,
        }
    )
    assert sorted(check_config(cfg, typos_are_errors=False)) == [
        "unknown config key 'data.train.batchsize' (did you mean 'data.train.batch_size'?)",
        "unknown config key 'data.train.zzzz'",
        "unknown config key 'optimizer_lr' (did you mean 'optimizer.lr'?)",
        "unknown config key 'schedule.max_epoch' (did you mean 'schedule.max_epochs'?)",
        "unknown config key 'totally_unrelated_thing'",
    ]


def test_check_config_misplaced_top_level_key_suggests_nested():
    warnings = check_config(with_defaults({"max_epochs": 3}), typos_are_errors=False)
    assert warnings == ["unknown config key 'max_epochs' (did you mean 'schedule.max_epochs'?)"]


def test_check_config_typo_is_an_error_naming_the_closest_key():
    cfg = with_defaults({"schedule": {"max_epoch": 3}})
    with pytest.raises(
        UserError, match=r"'schedule.max_epoch' \(did you mean 'schedule.max_epochs'\?\)$"
    ):
        check_config(cfg)
    two = with_defaults({"schedule": {"max_epoch": 3}, "data": {"train": {"batchsize": 8}}})
    with pytest.raises(UserError, match=r"did you mean .*\(and 1 more\)$"):
        check_config(two)


def test_check_config_unrelated_unknown_key_only_warns():
    assert check_config(with_defaults({"visualizer": {"type": "x"}})) == [
        "unknown config key 'visualizer'"
    ]


def test_check_config_open_keys_not_checked():
    cfg = with_defaults(
        {
            "optimizer": {"type": "AdamW", "betas": (0.9, 0.99), "whatever": 1},
            "schedule": {"lr_policy": {"type": "cosine", "eta_min": 1e-5}},
        }
    )
    assert check_config(cfg) == []


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (
            {"data": {"train": {"batch_size": "64"}}},
            "config key 'data.train.batch_size' must be int, got str ('64')",
        ),
        ({"seed": True}, "config key 'seed' must be int, got bool (True)"),
        ({"seed": 1.5}, "config key 'seed' must be int, got float (1.5)"),
        ({"model": {"cifar_stem": 1}}, "config key 'model.cifar_stem' must be bool, got int (1)"),
        ({"loss": {"label_smoothing": "x"}}, "config key 'loss.label_smoothing' must be float"),
        (
            {"loss": {"label_smoothing": False}},
            "config key 'loss.label_smoothing' must be float, got bool (False)",
        ),
        ({"launcher": 3}, "config key 'launcher' must be str or None, got int (3)"),
        ({"data": {"mean": 1.0}}, "config key 'data.mean' must be list, got float"),
        ({"model": 3}, "config key 'model' must be dict, got int (3)"),
        ({"optimizer": [1]}, "config key 'optimizer' must be dict, got list"),
    ],
)
def test_check_config_wrong_type(user, message):
    with pytest.raises(UserError) as err:
        check_config(with_defaults(user))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "user",
    [
        {"loss": {"label_smoothing": 0}},  # int where float is expected
        {"checkpoint": {"save_best": None}},  # None where str is expected
        {"data": {"mean": (1.0, 2.0, 3.0)}},  # tuple where list is expected
        {"model": {"num_classes": 10, "pretrained": "x.pt"}},  # default None: anything
        {"data": {"classes": ("a", "b")}},
    ],
)
def test_check_config_accepted_types(user):
    assert check_config(with_defaults(user)) == []


def test_check_config_long_value_is_shortened():
    with pytest.raises(UserError) as err:
        check_config(with_defaults({"seed": "x" * 500}))
    assert len(str(err.value)) < 120


# ---------------------------------------------------------------- close_matches


def test_close_matches():
    assert close_matches("resnet5", ["resnet50", "vgg11"]) == " (did you mean 'resnet50'?)"
    assert close_matches("xyz", ["resnet50", "vgg11"]) == ""
    assert close_matches("sgd", iter(["SGD", "sgd_", "Adam"])) == " (did you mean 'sgd_'?)"
    assert close_matches("a", []) == ""


# ---------------------------------------------------------------- format / dump


def test_dump_load_roundtrip(tmp_path):
    cfg = {
        "seed": 0,
        "work_dir": None,
        "model": {"arch": "resnet18", "pretrained": None, "compile": False},
        "data": {
            "mean": [123.675, 116.28, 103.53],
            "train": {
                "pipeline": [
                    {"type": "RandomCrop", "size": (32, 32), "padding": 4},
                    {"type": "Normalize", "nested": [[1, 2], [3, (4, 5)]]},
                ]
            },
        },
        "lr": 1e-5,
        "neg": -3,
        "text": "quote ' and \" and \n newline",
        "empty": {},
        "tup": (),
        "one": (1,),
        "long": list(range(200)),
    }
    path = tmp_path / "out" / "config.py"
    dump_config(cfg, path)
    loaded = load_config(path)
    assert loaded == cfg
    assert loaded["data"]["train"]["pipeline"][0]["size"] == (32, 32)
    assert isinstance(loaded["data"]["train"]["pipeline"][1]["nested"][1][1], tuple)
    assert isinstance(loaded["one"], tuple)
    assert list(loaded) == list(cfg)
    assert list(loaded["model"]) == ["arch", "pretrained", "compile"]  # order kept, not sorted
    assert [p.name for p in path.parent.iterdir()] == ["config.py"]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o644


def test_dump_defaults_roundtrip(tmp_path):
    path = tmp_path / "config.py"
    dump_config(with_defaults({}), path)
    assert load_config(path) == DEFAULTS


def test_format_config_is_python_with_header():
    text = format_config({"b": 1, "a": {"x": [1, 2]}})
    assert text.startswith("#")
    assert "b = 1\n" in text
    assert "a = {'x': [1, 2]}\n" in text
    assert text.index("b = 1") < text.index("a = ")
    namespace: dict = {}
    exec(compile(text, "<dump>", "exec"), namespace)
    assert namespace["a"] == {"x": [1, 2]}


def test_dump_overwrites_atomically(tmp_path, monkeypatch):
    path = tmp_path / "config.py"
    dump_config({"seed": 1}, path)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(config.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        dump_config({"seed": 2}, path)
    assert load_config(path) == {"seed": 1}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["config.py"]


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"my-key": 1}, "cannot write config key 'my-key'"),
        ({"class": 1}, "cannot write config key 'class'"),
        ({"_hidden": 1}, "cannot write config key '_hidden'"),
        ({"root": Path("/x")}, "config key 'root' cannot be written as a Python literal"),
        ({"lr": math.inf}, "config key 'lr' cannot be written as a Python literal"),
    ],
)
def test_format_config_rejects_unloadable(cfg, match):
    with pytest.raises(UserError, match=match):
        format_config(cfg)


# ---------------------------------------------------------------- flatten


def test_flatten():
    cfg = {"a": {"b": {"c": 1}, "d": [1, {"e": 2}]}, "f": None, "g": {}}
    assert flatten(cfg) == {"a.b.c": 1, "a.d": [1, {"e": 2}], "f": None, "g": {}}
    assert flatten({"x": {"y": 1}}, prefix="cfg") == {"cfg.x.y": 1}


def test_flatten_defaults_has_leaf_keys():
    flat = flatten(DEFAULTS)
    assert flat["data.train.batch_size"] == DEFAULTS["data"]["train"]["batch_size"]
    assert flat["optimizer.lr"] == DEFAULTS["optimizer"]["lr"]
    assert not any(isinstance(v, dict) and v for v in flat.values())


# ---------------------------------------------------------------- import weight


def test_config_does_not_import_torch():
    code = "import sys, ignite_cls.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# ---------------------------------------------------------------- dotted reads


def test_setting_reads_dotted_keys_and_list_items():
    cfg = with_defaults({"data": {"train": {"pipeline": [{"type": "Resize", "size": 8}]}}})
    assert setting(cfg, "amp.enabled") is False
    assert setting(cfg, "data.train.pipeline.0.size") == 8
    assert setting(cfg, "data.train") is cfg["data"]["train"]
    with pytest.raises(KeyError):
        setting(cfg, "amp.enable")
