"""conda plugin hooks. Hook functions only: conda imports this module on every command, so
everything heavy is imported inside the hooks, and only when conda calls them."""

from __future__ import annotations

from conda import plugins

# The platform primitives the hooks' code needs: the cache locks and the extractor take fcntl
# locks, which Windows lacks. Where one is missing a hook yields nothing, so conda carries on
# without the plugin instead of failing later, inside its own commands (an extractor that
# cannot import its locks would break every install).
PRIMITIVES = ("fcntl",)


def _primitives_present() -> bool:
    import importlib

    try:
        for name in PRIMITIVES:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


@plugins.hookimpl
def conda_subcommands():
    if not _primitives_present():
        return
    from .cli import SUMMARY, conda_action, conda_configure_parser

    yield plugins.types.CondaSubcommand(
        name="cache",
        summary=SUMMARY,
        action=conda_action,
        configure_parser=conda_configure_parser,
    )


@plugins.hookimpl
def conda_health_checks():
    if not _primitives_present():
        return
    from .conda_layer import doctor
    from .conda_layer.compat import health_check_has_fixer

    extra = {}
    if health_check_has_fixer():  # conda >= 26.1
        extra = {"fixer": doctor.fixer, "summary": doctor.SUMMARY, "fix": doctor.FIX}
    yield plugins.types.CondaHealthCheck(name=doctor.NAME, action=doctor.action, **extra)


@plugins.hookimpl
def conda_reporter_backends():
    # conda < 24.11 has no reporter backends (nor this hook); yield nothing there
    if not hasattr(plugins.types, "CondaReporterBackend"):
        return
    from .conda_layer.reporter_backend import plain_backend

    yield plain_backend()


@plugins.hookimpl
def conda_settings():
    # conda_settings exists since 24.3; the setting only matters where extractors exist (26.1)
    if not hasattr(plugins.types, "CondaSetting") or not hasattr(
        plugins.types, "CondaPackageExtractor"
    ):
        return
    if not _primitives_present():
        return  # the settings are the extractor's, which is not registered then
    from conda.common.configuration import PrimitiveParameter

    from .conda_layer.extractor import (
        LIMIT_SETTING_DESCRIPTION,
        LIMIT_SETTING_NAME,
        SETTING_DESCRIPTION,
        SETTING_NAME,
    )

    yield plugins.types.CondaSetting(
        name=SETTING_NAME,
        description=SETTING_DESCRIPTION,
        parameter=PrimitiveParameter(True, element_type=bool),
    )
    yield plugins.types.CondaSetting(
        name=LIMIT_SETTING_NAME,
        description=LIMIT_SETTING_DESCRIPTION,
        parameter=PrimitiveParameter("auto", element_type=str),
    )


@plugins.hookimpl
def conda_package_extractors():
    # conda calls this on every package-extension lookup, so it stays cheap: when the setting
    # is off nothing is registered and conda keeps its own extractor and pool.
    if not hasattr(plugins.types, "CondaPackageExtractor") or not _primitives_present():
        return
    from .conda_layer.extractor import EXTENSIONS, EXTRACTOR_NAME, enabled, extract

    if enabled():
        yield plugins.types.CondaPackageExtractor(
            name=EXTRACTOR_NAME, extensions=list(EXTENSIONS), extract=extract
        )


# Cache locks around installs (issue 27): taken after the solve, before conda's first look at
# the cache; released when the link is done. conda_post_solves exists since 24.11, the
# transaction actions since 26.1 (where they do not exist, the post-command or the process exit
# releases the locks).
@plugins.hookimpl
def conda_post_solves():
    if not hasattr(plugins.types, "CondaPostSolve") or not _primitives_present():
        return
    from .conda_layer.transaction_locks import post_solve

    yield plugins.types.CondaPostSolve(name="conda-cache-plus-locks", action=post_solve)


@plugins.hookimpl
def conda_pre_transaction_actions():
    if not hasattr(plugins.types, "CondaPreTransactionAction") or not _primitives_present():
        return
    from .conda_layer.transaction_locks import transaction_action_classes

    downgrade, _release = transaction_action_classes()
    yield plugins.types.CondaPreTransactionAction(name="conda-cache-plus-locks", action=downgrade)


@plugins.hookimpl
def conda_post_transaction_actions():
    if not hasattr(plugins.types, "CondaPostTransactionAction") or not _primitives_present():
        return
    from .conda_layer.transaction_locks import transaction_action_classes

    _downgrade, release = transaction_action_classes()
    yield plugins.types.CondaPostTransactionAction(name="conda-cache-plus-locks", action=release)


@plugins.hookimpl
def conda_post_commands():
    if not hasattr(plugins.types, "CondaPostCommand") or not _primitives_present():
        return
    from .conda_layer.lock_release import COMMANDS, post_command  # not the locks: every command

    yield plugins.types.CondaPostCommand(
        name="conda-cache-plus-locks", action=post_command, run_for=set(COMMANDS)
    )
