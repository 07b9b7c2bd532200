"""The full training session of the Core SRL guide, on the embedded model.

    python examples/full_training_session.py                  # 8 training episodes
    python examples/full_training_session.py --max-episodes 2

Model types that need a hub or an API (e.g. "qwen3", "openai") fail at start-up with a
message that says what to provide; this example uses the embedded "smollm2" for every slot.
"""

import asyncio

from srl_trainers import MultiModelConfig, MultiModelTrainer, TrainingMode


async def full_training_example(max_episodes: int = 8) -> dict:
    # Configure training
    config = MultiModelConfig(
        num_models=4,
        model_types=["smollm2"],
        training_mode=TrainingMode.MIXED,
        max_episodes=max_episodes,
        learning_rate=3e-4,
        checkpoint_dir="./training_checkpoints",
    )

    # Create trainer
    trainer = MultiModelTrainer(config)

    try:
        print("Starting multi-model training...")
        results = await trainer.train()

        print(f"Training completed in {results['training_time']:.2f}s")
        print(f"Total episodes: {results['total_episodes']}")

        performance = trainer.get_model_performance_summary()
        for model_id, stats in performance.items():
            print(f"{model_id}:")
            print(f"  Avg Reward: {stats['avg_reward']:.3f}")
            print(f"  Win Rate: {stats['win_rate']:.3f}")
            print(f"  Updates: {stats['update_count']}")

        return results

    finally:
        await trainer.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-episodes", type=int, default=8)
    results = asyncio.run(full_training_example(parser.parse_args().max_episodes))
