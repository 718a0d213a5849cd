"""Tenant models whose primary key is an integer or a UUID, with differently named FKs.

The bigint case, and an expression index, are in the own-tenant project
(``tests/scenarios/own_tenant``): an expression index here would add the normalisation's
statements to every full check of the test database.
"""

import uuid

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex, TenantManager, TenantScopedManager


class Workspace(models.Model):
    """A tenant model with a 32-bit integer primary key."""

    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A tenant model with a UUID primary key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Board(models.Model):
    workspace = TenantForeignKey(Workspace)
    title = models.CharField(max_length=50)
    archived = models.BooleanField(default=False)

    objects = TenantScopedManager()

    class Meta:
        indexes = [TenantIndex(fields=["archived"], name="pk_board_ws_archived")]

    def __str__(self) -> str:
        return self.title


class Player(models.Model):
    team = TenantForeignKey(Team)
    nickname = models.CharField(max_length=50)

    objects = TenantManager()

    class Meta:
        indexes = [TenantIndex(fields=["nickname"], name="pk_player_team_nick")]

    def __str__(self) -> str:
        return self.nickname
