"""The ``yaware`` command: pretrain, finetune, extract, toy-data."""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from yaware import __version__
from yaware.errors import YAwareError


def _pretrain(args: argparse.Namespace) -> None:
    from yaware.train import distributed
    from yaware.train.config import PretrainConfig, load_config
    from yaware.train.pretrain import pretrain

    cfg = load_config(PretrainConfig, args.config)
    print(pretrain(cfg, resume=args.resume, stop_after_epochs=args.stop_after_epochs))
    distributed.shutdown()  # torchrun's processes: after a finished run only


def _finetune(args: argparse.Namespace) -> None:
    from yaware.train.config import FinetuneConfig, load_config
    from yaware.train.finetune import finetune

    print(finetune(load_config(FinetuneConfig, args.config)))


def _extract(args: argparse.Namespace) -> None:
    from yaware.errors import OutputError
    from yaware.evaluate.features import extract_features, load_encoder
    from yaware.io import output_path_problem, save_npy
    from yaware.train.common import resolve_device

    if problem := output_path_problem(args.out):  # before the work, not after it
        raise OutputError(problem)
    model, name = load_encoder(args.checkpoint, args.encoder, trust=args.trust_checkpoint)
    features = extract_features(model, args.data, args.batch_size, str(resolve_device(args.device)))
    save_npy(args.out, features)
    print(f"{args.out}: {features.shape[0]} scans x {features.shape[1]} features ({name})")


def _toy_data(args: argparse.Namespace) -> None:
    from yaware.data.toy import write_toy_cohort

    write_toy_cohort(args.out, args.n, tuple(args.shape), args.seed)
    print(f"{args.out}: train/val arrays and tables of {args.n} generated scans")


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
    p.set_defaults(run=_toy_data)
    return parser


def _message(err: YAwareError) -> str:
    """The error's own words; a DataLoader worker's copy also carries the worker traceback."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
