"""Content calibration with diffusers: make style exemplars for train/tttn.py.

DCT-Net calibrates the style domain so that it covers the photo domain's content (poses, ages,
lighting). This script does it with Stable Diffusion:

    # img2img over your photos (content kept, look changed):
    python train/calibrate.py img2img --model runwayml/stable-diffusion-v1-5 --lora my-style-lora \\
        --photos photos/ --prompt "anime portrait, cel shading" --strength 0.6 --output calibrated/

    # text-to-image like the official release (one or more prompts per line of a file):
    python train/calibrate.py text2img --model MODEL --prompts prompts.txt --num-images 5 --output calibrated/

Every generated image is kept only if the library's face pipeline finds exactly one face of at
least ``--min-face`` pixels; kept faces are aligned (DCT-Net's 5-point crop) and written as PNG.
Runs are reproducible: image ``i`` uses the seed ``--seed + i``. Then train with
``train/tttn.py --calibrated calibrated/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from portrait_stylize.faces import align, get_face_backend
from portrait_stylize.imaging.io import save_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python train/calibrate.py` from a clone
from train.data import DataError, list_images


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("img2img", "text2img"))
    p.add_argument("--model", required=True, help="Stable Diffusion model id on the Hub, or a local folder")
    p.add_argument("--lora", help="optional LoRA (Hub id or file) with the style")
    p.add_argument("--lora-scale", type=float, default=1.0)
    p.add_argument("--prompt", default="", help="style prompt (img2img), or a prompt for every image (text2img)")
    p.add_argument("--prompts", help="text2img: a file with one prompt per line")
    p.add_argument("--negative-prompt", default="lowres, blurry, deformed face, extra faces, text, watermark")
    p.add_argument("--photos", help="img2img: folder of photos")
    p.add_argument("--num-images", type=int, default=1, help="images per photo / prompt")
    p.add_argument("--strength", type=float, default=0.6, help="img2img: 0 keeps the photo, 1 ignores it")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--min-face", type=int, default=128, help="smallest face (box side, pixels) to keep")
    p.add_argument("--crop-size", type=int, default=align.CROP_SIZE, help="side of the aligned face crops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--output", required=True)
    p.add_argument("--save-rejected", metavar="DIR", help="also write rejected generations here")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; a missing ``--photos`` folder (or one without images) or ``--prompts``
    file is a command-line error here, before the model is loaded."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.mode == "img2img" and not args.photos:
        p.error("img2img needs --photos")
    if args.mode == "text2img" and not (args.prompt or args.prompts):
        p.error("text2img needs --prompt or --prompts")
    if args.mode == "img2img":
        try:
            list_images(args.photos, "--photos")
        except DataError as exc:
            p.error(str(exc))
    if args.mode == "text2img" and args.prompts and not Path(args.prompts).is_file():
        p.error(f"--prompts {args.prompts}: file not found")
    return args


def load_pipeline(args: argparse.Namespace):
    """The diffusers pipeline for ``args.mode``, with the LoRA loaded when given."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    cls = StableDiffusionImg2ImgPipeline if args.mode == "img2img" else StableDiffusionPipeline
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    pipe = cls.from_pretrained(args.model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False)
    if args.lora:
        pipe.load_lora_weights(args.lora)
        pipe.fuse_lora(lora_scale=args.lora_scale)
    return pipe.to(args.device)


def keep_face(image: Image.Image, min_face: int, crop_size: int) -> tuple[Image.Image | None, str]:
    """The aligned face crop if ``image`` shows exactly one face of at least ``min_face`` pixels;
    otherwise ``None`` and the reason."""
    rgb = np.asarray(image.convert("RGB"))
    faces = get_face_backend("mediapipe").detect(rgb)
    if len(faces) != 1:
        return None, "no face" if not faces else "several faces"
    if faces[0].size < min_face:
        return None, "face too small"
    matrix = align.crop_transform(faces[0].landmarks, crop_size)
    return Image.fromarray(align.warp_to_crop(rgb, matrix, crop_size)), "kept"


def calibrate(pipe, jobs: list[dict], output: str | Path, *, seed: int = 0, min_face: int = 128,
              crop_size: int = align.CROP_SIZE, rejected: str | Path | None = None, progress: bool = True,
              **call_kwargs) -> dict[str, int]:
    """Run ``pipe`` once per job, filter and align the results, write ``output/NNNNN.png``.

    Args:
        pipe: a diffusers Stable Diffusion (img2img or text-to-image) pipeline.
        jobs: keyword arguments per image (``{"image": PIL}`` for img2img, ``{"prompt": str}`` ...).
        seed: image ``i`` is generated with ``torch.Generator().manual_seed(seed + i)``.
        rejected: also write the images the filter rejected there, to see what went wrong.
        call_kwargs: passed to every call (``num_inference_steps``, ``guidance_scale``,
            ``strength``, ``prompt_embeds`` ...).

    Returns:
        How many images were kept and rejected, by reason.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    counts = {"kept": 0, "no face": 0, "several faces": 0, "face too small": 0}
    for i, job in enumerate(tqdm(jobs, desc="calibrating", unit="img", disable=not progress)):
        generator = torch.Generator().manual_seed(seed + i)
        image = pipe(**job, **call_kwargs, generator=generator).images[0]
        face, verdict = keep_face(image, min_face, crop_size)
        counts[verdict] += 1
        if face is not None:
            save_image(face, output / f"{i:05d}.png")
        elif rejected is not None:
            save_image(image, Path(rejected) / f"{i:05d}-{verdict.replace(' ', '-')}.png")
    return counts


def main(args: argparse.Namespace) -> dict[str, int]:
    pipe = load_pipeline(args)
    call = {"num_inference_steps": args.steps, "guidance_scale": args.guidance,
            "negative_prompt": args.negative_prompt}
    if args.mode == "img2img":
        photos = [Image.open(p).convert("RGB").resize((args.resolution, args.resolution), Image.LANCZOS)
                  for p in list_images(args.photos, "--photos")]
        jobs = [{"image": photo, "prompt": args.prompt} for photo in photos for _ in range(args.num_images)]
        call["strength"] = args.strength
    else:
        prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()] \
            if args.prompts else [args.prompt]
        jobs = [{"prompt": prompt} for prompt in prompts for _ in range(args.num_images)]
        call.update(height=args.resolution, width=args.resolution)
    counts = calibrate(pipe, jobs, args.output, seed=args.seed, min_face=args.min_face, crop_size=args.crop_size,
                       rejected=args.save_rejected, **call)
    print(f"{counts['kept']} of {len(jobs)} images kept in {args.output}; rejected: "
          + ", ".join(f"{n} {reason}" for reason, n in counts.items() if reason != "kept"))
    return counts


if __name__ == "__main__":
    main(parse_args())
