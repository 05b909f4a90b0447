"""The ``yaware`` command: pretrain, finetune, extract, toy-data."""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from yaware import __version__
from yaware.errors import YAwareError
from yaware.run_folder import expand_path


def _pretrain(args: argparse.Namespace) -> None:
    from yaware.train import distributed
    from yaware.train.config import PretrainConfig, load_config
    from yaware.train.pretrain import pretrain

    cfg = load_config(PretrainConfig, args.config)
    last = pretrain(
        cfg, resume=args.resume, stop_after_epochs=args.stop_after_epochs, overwrite=args.overwrite
    )
    print(last)
    distributed.shutdown()  # torchrun's processes: after a finished run only


def _finetune(args: argparse.Namespace) -> None:
    from yaware.train.config import FinetuneConfig, load_config
    from yaware.train.finetune import finetune

    print(finetune(load_config(FinetuneConfig, args.config)))


def _extract(args: argparse.Namespace) -> None:
    from yaware.errors import OutputError
    from yaware.evaluate.features import extract_features, load_encoder
    from yaware.io import output_path_problem, save_npy
    from yaware.run_folder import refuse_input_as_output, refuse_overwrite
    from yaware.train.common import resolve_device

    out = args.out
    refuse_input_as_output(out, {"--data": args.data, "--checkpoint": args.checkpoint})
    if problem := output_path_problem(out):  # before the work, not after it
        raise OutputError(problem)
    if not args.overwrite:
        refuse_overwrite([out])
    model, name = load_encoder(args.checkpoint, args.encoder, trust=args.trust_checkpoint)
    features = extract_features(model, args.data, args.batch_size, str(resolve_device(args.device)))
    save_npy(out, features)
    print(f"{out}: {features.shape[0]} scans x {features.shape[1]} features ({name})")


def _toy_data(args: argparse.Namespace) -> None:
    from pathlib import Path

    from yaware.data.toy import TOY_FILES, write_toy_cohort
    from yaware.run_folder import refuse_overwrite

    if not args.overwrite:
        refuse_overwrite([Path(args.out) / name for name in TOY_FILES])
    write_toy_cohort(args.out, args.n, tuple(args.shape), args.seed)
    print(f"{args.out}: train/val arrays and tables of {args.n} generated scans")


def _openbhb_download(args: argparse.Namespace) -> None:
    from yaware.data.openbhb import REVISION
    from yaware.data.openbhb_fetch import fetch_openbhb

    fetched = fetch_openbhb(args.root, roi=args.roi)
    print(f"{args.root}: {len(fetched)} files fetched (OpenBHB revision {REVISION[:12]})")


def _at_least(smallest: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``smallest`` (argparse names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < smallest:
            raise argparse.ArgumentTypeError(f"must be at least {smallest}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yaware", description="y-Aware contrastive learning on 3D MRI"
    )
    parser.add_argument("--version", action="version", version=f"yaware {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="contrastive pretraining (y-Aware or SimCLR)")
    p.add_argument("--config", required=True, help="YAML file of PretrainConfig keys")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/last.pt if present")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an out_dir that holds a run, replacing its files",
    )
    p.add_argument(
        "--stop-after-epochs",
        type=_at_least(1),
        default=None,
        metavar="K",
        help="end this run after K epochs in total (resume later)",
    )
    p.set_defaults(run=_pretrain)

    p = sub.add_parser("finetune", help="train a classifier from pretrained weights or scratch")
    p.add_argument("--config", required=True, help="YAML file of FinetuneConfig keys")
    p.set_defaults(run=_finetune)

    p = sub.add_parser("extract", help="write the encoder's representation of every scan")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or the released .pth")
    p.add_argument("--data", required=True, help="(N, 1, X, Y, Z) .npy array")
    p.add_argument("--out", required=True, help="output .npy of shape (N, F)")
    p.add_argument(
        "--encoder",
        default=None,
        help="encoder name if the checkpoint records none (default: the one its layer names "
        "are those of, else densenet121)",
    )
    p.add_argument("--batch-size", type=_at_least(1), default=8)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a checkpoint holding arbitrary Python objects (can run code)",
    )
    p.set_defaults(run=_extract)

    p = sub.add_parser("toy-data", help="generate a small train/val cohort for a demo")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=_at_least(3), default=120, help="scans, 80 %% train and 20 %% val")
    p.add_argument("--shape", type=_at_least(1), nargs=3, default=(32, 38, 32))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.set_defaults(run=_toy_data)

    p = sub.add_parser(
        "openbhb-download",
        help="fetch OpenBHB's participants.tsv and VBM maps that are missing under --root",
    )
    p.add_argument("--root", required=True, help="the copy's folder (created if absent)")
    p.add_argument("--roi", action="store_true", help="fetch the ROI volumes (vbm_roi) too")
    p.set_defaults(run=_openbhb_download)
    return parser


def _message(err: YAwareError) -> str:
    """The error's own words; a DataLoader worker's copy also carries the worker traceback."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


# The options that name files: ``~`` and ``$VARIABLES`` in them are expanded, as in configs.
PATH_OPTIONS = ("config", "checkpoint", "data", "out", "root")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for option in PATH_OPTIONS:
        if isinstance(getattr(args, option, None), str):
            setattr(args, option, expand_path(getattr(args, option)))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from yaware.train.common import Interrupted

    try:
        args.run(args)
    except YAwareError as err:
        print(f"yaware {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"yaware {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(
            f"yaware {args.command}: interrupted (Ctrl-C); nothing more was saved", file=sys.stderr
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
