"""Class-incremental learning on a pretrained ViT with LoRA: streams, the tiny ViT, methods (DESIRE and the
PEFT baselines), metrics and the runner. Every training goes through `citkit.engine.Engine.fit_task`."""
