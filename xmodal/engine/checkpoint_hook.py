"""mmengine's CheckpointHook, changed so that a run killed at any point resumes exactly.

Registered as ``CheckpointHook`` in the xmodal scope, so every config's
``default_hooks.checkpoint = dict(type="CheckpointHook", ...)`` builds this one. Changes against
mmengine 0.10.7:

* **Written after validation.** mmengine writes an epoch's checkpoint before that epoch's
  validation, rewriting it afterwards only when the best metric improved. A checkpoint written
  before validation misses what validation changes (the RNG state, which a validation dataloader
  draws from; the best-metric record; stage hooks' selections such as MST's best masks), and a kill
  during validation resumes after it, so that validation never happens. Here a checkpoint due after
  an epoch (or iteration) is written when its validation has finished, or when the next epoch or
  iteration starts if none runs, or when training ends.
* **Old checkpoints go last.** mmengine deletes the checkpoint that falls out of ``max_keep_ckpts``
  before writing the new one and writes ``last_checkpoint`` with a plain ``open``: with the default
  ``max_keep_ckpts=1``, a kill during the write left ``last_checkpoint`` naming a deleted file.
  Here the new checkpoint is written (atomically, through :class:`AtomicLocalBackend`), then
  ``last_checkpoint`` (atomically), and only then is the old file deleted.
* **The previous best goes last too.** mmengine deletes the previous ``best_*.pth`` before writing the
  new one; a write that fails (a full disk) left no best checkpoint at all. Here it is deleted only
  once the new best (and the checkpoint recording it) is written.
* **Leftovers cleared.** Temp files of writes killed before their rename are deleted when training
  starts.
* **Resumable files only.** ``--resume`` with a file that has no ``meta.epoch`` / ``meta.iter`` (a
  student-only ``student_best.pth``, exported weights) is refused with a message that points to the
  epoch checkpoints and to ``load_from``, instead of mmengine's bare ``KeyError: 'epoch'``.
* **No silent replay.** mmengine's ``EpochBasedTrainLoop`` resumes at the start of the checkpoint's
  epoch; from a checkpoint written mid-epoch (``by_epoch=False`` in an epoch-based loop) it would
  train that epoch's first batches twice. Resuming from such a checkpoint is refused.
"""

from __future__ import annotations

from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.runner import EpochBasedTrainLoop

from xmodal.engine.checkpoint import atomic_write_bytes, remove_stale_temp_files
from xmodal.errors import CheckpointError
from xmodal.registry import HOOKS


class _DeferredRemoval:
    """A file backend whose ``remove`` / ``rmtree`` only record the path, to be deleted later."""

    def __init__(self, backend) -> None:
        self._backend, self.deferred = backend, []

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def remove(self, path) -> None:
        self.deferred.append(path)

    def rmtree(self, path) -> None:
        self.deferred.append(path)


@HOOKS.register_module(name="CheckpointHook")
class ResumableCheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with the changes in the module docstring."""

    _pending: int | None = None  # the step (epoch or iteration number) of a checkpoint not yet written

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._pending = None
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for directory in {Path(self.out_dir), Path(runner.work_dir)}:
                for path in remove_stale_temp_files(directory):
                    runner.logger.info(f"removed {path.name}, left by an interrupted checkpoint write")

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:
            return
        meta = checkpoint.get("meta") or {}
        missing = [key for key in ("epoch", "iter") if key not in meta]
        if missing:  # mmengine would stop on a bare KeyError('epoch')
            path = getattr(runner, "_load_from", None) or "the checkpoint"
            raise CheckpointError(
                f"{path}: not a training checkpoint, its meta has no {missing}: a student-only or weights-only "
                f"file (such as student_best.pth) cannot be resumed. --resume needs a full checkpoint written "
                f"during training (WORK_DIR/epoch_N.pth, or --resume alone for the latest); to start a new run "
                f"from these weights use --cfg-options load_from={path} without --resume")
        loop = runner._train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            return
        epoch, iteration, per_epoch = meta.get("epoch"), meta.get("iter"), len(loop.dataloader)
        if epoch is not None and iteration is not None and iteration != epoch * per_epoch:
            raise CheckpointError(
                f"cannot resume from a checkpoint written mid-epoch (epoch {epoch}, iteration {iteration}, "
                f"{per_epoch} iterations per epoch): the epoch-based loop restarts epoch {epoch + 1} from its first "
                "batch and would train those batches twice. Resume from an epoch checkpoint (--resume "
                "WORK_DIR/epoch_N.pth), or keep the dataset and batch size the checkpoint was trained with.")

    # -- deferring the periodic checkpoint until validation has run --------------------------------
    def _save_checkpoint(self, runner) -> None:
        self._pending = runner.epoch + 1 if self.by_epoch else runner.iter + 1

    def _flush(self, runner) -> None:
        if self._pending is not None:
            # the loop has counted the finished epoch / iteration by now: epoch and iter are the resume point
            self._save_checkpoint_with_step(runner, self._pending, meta=dict(epoch=runner.epoch, iter=runner.iter))

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)  # best checkpoint; rewrites the pending one if the best improved
        self._flush(runner)

    def before_train_epoch(self, runner) -> None:
        self._flush(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._flush(runner)

    def after_train(self, runner) -> None:
        self._flush(runner)
        super().after_train(runner)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        backend = self.file_backend
        self.file_backend = deferred = _DeferredRemoval(backend)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        current = {getattr(self, "best_ckpt_path", None), *(getattr(self, "best_ckpt_path_dict", None) or {}).values()}
        for path in deferred.deferred:  # reached only when every write succeeded
            if path in current:
                continue
            if backend.isfile(path):
                backend.remove(path)
            elif backend.isdir(path):  # checkpoints saved by deepspeed are directories
                backend.rmtree(path)

    # -- write the new checkpoint, then the pointer, then delete the old one -------------------------
    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        dropped = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))

        self.last_ckpt = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, self.filename_tmpl.format(step), self.file_client_args,
                               save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if self._pending == step:
            self._pending = None
        if not is_main_process():
            return
        atomic_write_bytes(str(self.last_ckpt).encode(), Path(runner.work_dir) / "last_checkpoint")
        if dropped is not None and dropped != step:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(dropped))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)
