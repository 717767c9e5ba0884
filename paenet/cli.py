"""One line, exit status 1, for every error a command's user can cause: a bad flag value, a missing,
damaged or foreign file (checkpoint, GraphDef, image, pairs.txt, workspace file), a read-only folder, a
full disk. The commands' ``main`` functions run their work through ``report_errors``."""
from __future__ import annotations

import sys


def user_errors() -> tuple:
    """The exception types that mean bad input or a bad file rather than a bug in PAENet."""
    import tensorflow as tf
    from PIL import Image

    from paenet.facenet_import import FacenetImportError
    from paenet.records import IntegrityError
    from paenet.workspace import WorkspaceError
    return (ValueError, KeyError, OSError, IntegrityError, WorkspaceError, FacenetImportError,
            tf.errors.OpError, Image.DecompressionBombError)


def report_errors(program: str, work):
    """Returns ``work()``; an error of ``user_errors`` is printed as ``program: message`` on one
    line and ends the process with status 1."""
    from paenet.fileio import error_line
    try:
        return work()
    except user_errors() as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else error_line(e)
        print(f"{program}: {message}", file=sys.stderr)
        sys.exit(1)


HELP_ARGS = ("--help", "-h", "-?", "--helpshort")


def grouped_help(doc: str, groups, flag_values=None) -> str:
    """`doc`, then each group's flags under its title: ``[(title, [flag name, ...]), ...]``."""
    from absl import flags
    flag_values = flags.FLAGS if flag_values is None else flag_values
    lines = [doc.strip(), ""]
    for title, names in groups:
        lines.append(f"{title}:")
        for name in names:
            flag = flag_values[name]
            label = f"--[no]{name}" if flag.boolean else f"--{name}"
            text = f"{label}: {flag.help}"
            if flag.default is not None:
                text += f" (default: {flag.default_as_str})"
            lines.append(flags.text_wrap(text, 100, "      ", "  "))
        lines.append("")
    lines.append("-v 0 (--verbosity=0) or more also shows TensorFlow's and absl's logs.\n"
                 "--helpfull lists every flag, the libraries' included.")
    return "\n".join(lines)


def flags_parser(groups=None):
    """A ``flags_parser`` for ``absl.app.run``: ``--help`` prints the command's own settings grouped
    (``groups()`` gives ``grouped_help``'s groups; default: the flags the command defines) and
    ``--helpfull`` every flag, both on stdout with exit status 0; anything else is parsed as absl does."""
    def parse(argv):
        from absl import app, flags
        args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
        if any(a in HELP_ARGS for a in args):
            own = [("flags", sorted(f.name for f in flags.FLAGS.get_key_flags_for_module(sys.argv[0])))]
            print(grouped_help(sys.modules["__main__"].__doc__ or "", groups() if groups else own))
            sys.exit(0)
        if "--helpfull" in args:
            app.usage(shorthelp=False, writeto_stdout=True)
            sys.exit(0)
        return app.parse_flags_with_usage(argv)
    return parse
