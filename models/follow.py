"""Followers of accounts and contacts (a lead's or an opportunity's are in models/deal.py).

Following an account or a contact tells the follower of its changes; it grants no reading: the
organization reads its accounts and contacts anyway.
"""

from __future__ import annotations

from tortoise import fields

from models.account import Account
from models.base import TimestampedModel
from models.contact import Contact
from models.organization import Organization
from models.user import User


class AccountFollower(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="account_followers", on_delete=fields.CASCADE
    )
    record: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="followers", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="followed_accounts", on_delete=fields.CASCADE
    )

    organization_id: int
    record_id: int
    user_id: int

    class Meta:
        table = "account_follower"
        unique_together = (("record", "user"),)
        # What a user follows (followedEvents), and a record's followers (notifications).
        indexes = (("organization_id", "user_id", "record_id"), ("organization_id", "record_id"))


class ContactFollower(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="contact_followers", on_delete=fields.CASCADE
    )
    record: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="followers", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="followed_contacts", on_delete=fields.CASCADE
    )

    organization_id: int
    record_id: int
    user_id: int

    class Meta:
        table = "contact_follower"
        unique_together = (("record", "user"),)
        indexes = (("organization_id", "user_id", "record_id"), ("organization_id", "record_id"))
