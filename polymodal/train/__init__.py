from polymodal.train.loop import train_net

__all__ = ["train_net"]
