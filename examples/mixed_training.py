"""Mixed mode (Core SRL guide, recommended): the cooperation balance adapts during training.

    python examples/mixed_training.py                  # 6 training episodes
    python examples/mixed_training.py --max-episodes 2

Federated weight updates: after local steps, the group's LoRA updates are averaged with
weights from recent rewards and mixed back. Runs on the embedded model in a few minutes.
"""

import asyncio

from srl_trainers import (
    MultiModelConfig,
    MultiModelTrainer,
    TrainingMode,
    WeightUpdateStrategy,
)


async def main(max_episodes: int = 6) -> dict:
    config = MultiModelConfig(
        training_mode=TrainingMode.MIXED,
        cooperation_strength=0.6,
        competition_intensity=0.4,
        weight_update_strategy=WeightUpdateStrategy.FEDERATED,
        max_episodes=max_episodes,
        checkpoint_dir="./checkpoints/mixed",
    )
    trainer = MultiModelTrainer(config)
    try:
        results = await trainer.train()
        print(
            f"cooperation balance at the end: {results['training_metrics']['train/cooperation_balance']:.2f}"
        )
        return results
    finally:
        await trainer.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-episodes", type=int, default=6)
    asyncio.run(main(parser.parse_args().max_episodes))
