"""A stand-in for BPG's ``bpgdec`` used by tests/test_bpg.py (standard library only).

``bpgdec [-b 8|16] [-i] [-o out.png] in.bpg``: checks argv like the real tool, reads a
file written by fake_bpgenc.py and writes the PNG stored inside it. Test switches
(environment): FAKE_BPGDEC_EXIT=N (fail with status N and a stderr message).
"""

import os
import sys

MAGIC = b"FAKEBPG1\n"


def fail(message, status=1):
    sys.stderr.write(f"bpgdec: {message}\n")
    sys.exit(status)


def main(argv):
    if "-h" in argv or not argv:
        print("BPG Image Decoder version 0.9.8-fake\nusage: bpgdec [options] infile")
        sys.exit(1)
    out, positional, i = "out.png", [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-o", "-b"):
            if i + 1 >= len(argv):
                fail(f"option {arg} needs a value")
            if arg == "-o":
                out = argv[i + 1]
            i += 2
        elif arg == "-i":
            i += 1
        elif arg.startswith("-"):
            fail(f"unknown option {arg}")
        else:
            positional.append(arg)
            i += 1
    if len(positional) != 1:
        fail(f"expected one input file, got {positional}")
    if os.environ.get("FAKE_BPGDEC_EXIT"):
        fail("simulated decoder failure", int(os.environ["FAKE_BPGDEC_EXIT"]))
    with open(positional[0], "rb") as fh:
        data = fh.read()
    if not data.startswith(MAGIC):
        fail("Could not decode image")
    _header, _, png = data[len(MAGIC):].partition(b"\n")
    if not out.endswith(".png"):
        fail("only PNG output is supported by this fake")
    with open(out, "wb") as fh:
        fh.write(png)


if __name__ == "__main__":
    main(sys.argv[1:])
