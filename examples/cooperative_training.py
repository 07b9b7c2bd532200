"""Cooperative mode (Core SRL guide): models share rewards and average their gradients.

    python examples/cooperative_training.py                  # 6 training episodes
    python examples/cooperative_training.py --max-episodes 2

Trains 4 LoRA slots of the embedded SmolLM2-135M on the commons game for a few episodes on a
CPU (a few minutes) and prints each model's average reward.
"""

import asyncio

from srl_trainers import WeightUpdateStrategy, create_cooperative_multimodel_trainer


async def main(max_episodes: int = 6) -> dict:
    trainer = create_cooperative_multimodel_trainer(num_models=4)
    trainer.config.cooperation_strength = 0.8  # High cooperation
    trainer.config.weight_update_strategy = WeightUpdateStrategy.SYNCHRONIZED
    trainer.config.max_episodes = max_episodes
    trainer.config.checkpoint_dir = "./checkpoints/cooperative"
    try:
        results = await trainer.train()
        for model_id, stats in trainer.get_model_performance_summary().items():
            print(f"{model_id}: {stats['avg_reward']:.3f} avg reward")
        return results
    finally:
        await trainer.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-episodes", type=int, default=6)
    asyncio.run(main(parser.parse_args().max_episodes))
