from xmodal.models.heads.classification import ClsHead

__all__ = ["ClsHead"]
