"""A module that fails on import with an ordinary exception (a missing setting, a broken
dependency), for the supervisor tests of ``qifu serve`` (tests/entry/test_serving.py)."""

raise RuntimeError("导入失败（测试）")
