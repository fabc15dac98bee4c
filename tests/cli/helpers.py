"""Shared bits of the CLI tests."""

GROUP_FLAG = "a=a1+a2,b=b1+b2"  # tests.xor_data.GROUPS as a --group flag
TINY = ["--group", GROUP_FLAG, "--epochs", "1", "--dim", "16", "--batch-size", "32"]  # a fast fit


def flat(res) -> str:
    """The whole output (stdout and stderr) without Rich's line wrapping."""
    return " ".join(res.output.split())
