"""Train the locally controllable U²-Net + LFFM model (paper 2) as a reference-based style.

    accelerate launch train/local.py --photos PHOTOS/ --styles STYLE_IMAGES/ --output OUT/ [options]

Same conventions as ``train/tttn.py`` (``--config``, ``--resume_from_checkpoint latest``, atomic
checkpoints, TensorBoard logs, sample grids, ``--push-to-hub``). Two generators are trained as a
cycle (photo -> style -> photo and style -> photo -> style) with two multi-scale discriminators:

    L = L_adv (LSGAN, D_S on photos, D_T on style images)
      + cycle weight · L2 cycle consistency
      + reconstruction weight · L1 of each generator's content reconstruction
      + α · local style loss (Gram matrices of VGG features inside the photo's region mask)

α defaults to 0.06 (the paper: 0.06-0.08). Region masks come from the library's face parser,
computed once per photo. The paper trains at 1024², batch 8, lr 1e-4 for 16k-25k steps on an
A100; the defaults here are 256² and batch 1 so that a single consumer GPU can run it.
``OUT`` ends up a style folder (``arch: u2lffm``) whose default style reference is
``--reference`` (default: the first style image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from portrait_stylize.imaging.io import load_image, pil_to_tensor
from portrait_stylize.models import ReferenceStyle
from portrait_stylize.models.serialization import save_style
from portrait_stylize.models.u2lffm import MultiScaleDiscriminator, U2LFFMGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `accelerate launch train/local.py` from a clone
from train import common, losses
from train.data import batch, list_images, load_set, step_rng
from train.nets import ContentNet


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML/JSON file of option values (flags override it)")
    p.add_argument("--photos", help="folder of photos")
    p.add_argument("--styles", help="folder of style images")
    p.add_argument("--reference", help="default style reference stored with the weights (default: first style image)")
    p.add_argument("--resolution", type=int, default=256, help="training crop side (paper: 1024)")
    p.add_argument("--no-expand", action="store_true", help="turn off geometry expansion")
    p.add_argument("--regions", default="skin,hair,lips,eyes,brows,nose",
                   help="regions of the local style loss and LFFM mask")
    p.add_argument("--attn-tokens", type=int, default=4096, help="most positions the LFFM attention sees")
    p.add_argument("--local-style-weight", type=float, default=0.06, help="α (paper: 0.06-0.08)")
    p.add_argument("--cycle-weight", type=float, default=10.0)
    p.add_argument("--reconstruction-weight", type=float, default=1.0)
    p.add_argument("--content-net", choices=("vgg19", "random"), default="vgg19")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999))
    p.add_argument("--batch-size", type=int, default=1, help="per process (paper: 8)")
    common.add_run_options(p, max_steps=20_000)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return common.parse_run_args(build_parser(), argv)


def _adversarial_d(d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    logits = d(torch.cat([real, fake.detach()]))
    return sum(losses.lsgan_d(*scale.split([len(real), len(fake)])) for scale in logits)


def main(args: argparse.Namespace) -> Path:
    from accelerate import DistributedDataParallelKwargs

    # Each generator runs twice per iteration (translation and cycle): a static graph lets DDP
    # synchronise gradients correctly on several GPUs.
    accelerator, output = common.start_run(args, [DistributedDataParallelKwargs(static_graph=True)])
    # Before the data: a missing metric network or a bad validation folder ends the run in
    # seconds, not after the training photos are read and aligned.
    validation = common.start_validation(accelerator, args)
    main_process, res, bsz = accelerator.is_main_process, args.resolution, args.batch_size
    regions = [r for r in args.regions.split(",") if r]
    photos = load_set([args.photos], "--photos", res, regions=regions, progress=main_process)
    styles = load_set([args.styles], "--styles", res, progress=main_process)
    if main_process:
        print(photos.describe("photos"), "|", styles.describe("style images"))

    g_st, g_ts = U2LFFMGenerator(attn_tokens=args.attn_tokens), U2LFFMGenerator(attn_tokens=args.attn_tokens)
    d_photo, d_style = MultiScaleDiscriminator(), MultiScaleDiscriminator()
    content_net = ContentNet(args.content_net, seed=args.seed)
    adam = dict(lr=args.lr, betas=tuple(args.betas))
    opt_g = torch.optim.Adam([*g_st.parameters(), *g_ts.parameters()], **adam)
    opt_d = torch.optim.Adam([*d_photo.parameters(), *d_style.parameters()], **adam)
    g_st, g_ts, d_photo, d_style, opt_g, opt_d = accelerator.prepare(g_st, g_ts, d_photo, d_style, opt_g, opt_d)
    content_net.to(accelerator.device)
    start = common.resume(accelerator, args, output, "local")

    device = accelerator.device
    shown = list(range(min(4, len(photos.samples))))
    preview = batch(photos.samples, step_rng(args.seed, 0), len(shown), res, expand=False, indices=shown)["image"]
    preview_style = batch(styles.samples, step_rng(args.seed, 0), 1, res, expand=False, indices=[0])["image"]
    bar = tqdm(range(start, args.max_steps), initial=start, total=args.max_steps, desc="training",
               disable=not main_process)
    for step in bar:
        rng = step_rng(args.seed, step, accelerator.process_index)
        pb = batch(photos.samples, rng, bsz, res, not args.no_expand)
        style = batch(styles.samples, rng, bsz, res, not args.no_expand)["image"].to(device)
        photo, mask = pb["image"].to(device), pb["mask"].to(device)
        mask = torch.where(mask.flatten(1).any(1)[:, None, None, None], mask, torch.ones_like(mask))

        fake_style, rec_photo = g_st(photo, style, mask)
        fake_photo, rec_style = g_ts(style, photo)
        cycle_photo, _ = g_ts(fake_style, photo)
        cycle_style, _ = g_st(fake_photo, style, mask)

        d_loss = _adversarial_d(d_style, style, fake_style) + _adversarial_d(d_photo, photo, fake_photo)
        opt_d.zero_grad()
        accelerator.backward(d_loss)
        opt_d.step()

        terms = {
            "adversarial": (sum(losses.lsgan_g(s) for s in d_style(fake_style))
                            + sum(losses.lsgan_g(s) for s in d_photo(fake_photo))),
            "cycle": F.mse_loss(cycle_photo, photo) + F.mse_loss(cycle_style, style),
            "reconstruction": F.l1_loss(rec_photo, photo) + F.l1_loss(rec_style, style),
        }
        with torch.no_grad():
            f_style = content_net(style)
        terms["local_style"] = losses.masked_gram_loss(content_net(fake_style), f_style, mask)
        total = (terms["adversarial"] + args.cycle_weight * terms["cycle"]
                 + args.reconstruction_weight * terms["reconstruction"]
                 + args.local_style_weight * terms["local_style"])
        opt_g.zero_grad()
        accelerator.backward(total)
        opt_g.step()

        done = step + 1
        common.after_step(accelerator, args, output, done, {"d_loss": d_loss, "g_total": total, **terms}, bar,
                          g_key="g_total")
        if common.sample_due(accelerator, args, done):
            with torch.no_grad():
                net = accelerator.unwrap_model(g_st)
                fake = net(preview.to(device), preview_style.to(device).expand(len(preview), -1, -1, -1))[0]
            common.save_samples(accelerator, common.grid([[p, preview_style[0], f] for p, f in zip(preview, fake)]),
                                output, done)
        if common.validation_due(args, validation, done):
            net = accelerator.unwrap_model(g_st)
            reference = preview_style.to(device)
            # The whole picture in the preview reference's style (no region mask).
            # validate() calls the function before this iteration ends; the defaults only make the binding explicit.
            common.validate(accelerator, validation, output, done,
                            lambda x, net=net, reference=reference: net(x, reference.expand(len(x), -1, -1, -1))[0],
                            args.name or output.name)
    common.finish(accelerator, args, output,
           lambda: _write_style(args, accelerator.unwrap_model(g_st), output, photos, styles))
    return output


def _write_style(args, generator: U2LFFMGenerator, output: Path, photos, styles) -> None:
    reference = Path(args.reference) if args.reference else list_images(args.styles, "--styles")[0]
    model = ReferenceStyle(generator={"attn_tokens": args.attn_tokens}, channel_order="rgb",
                           name=args.name or output.name, description=args.description or "Trained with train/local.py",
                           licence=args.licence, source="train/local.py")
    model.generator.load_state_dict(generator.state_dict())
    model.set_reference(pil_to_tensor(load_image(reference))[0])
    extra = common.card_extra(args, "photo | reference | stylized", f"Data: {photos.describe('photos')}; "
                       f"{styles.describe('style images')}. Default reference: `{reference.name}`.")
    save_style(model, output, card_extra=extra, load_name=str(output))


if __name__ == "__main__":
    main(parse_args())
