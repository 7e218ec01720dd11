"""The demo organization the README's first command loads (once: a second run keeps it)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from tortoise.transactions import in_transaction

from config import Settings
from models import (
    Account,
    Campaign,
    CampaignChannel,
    Contact,
    Lead,
    LeadFollower,
    LeadParticipant,
    LeadStatus,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    OpportunityStatus,
    Organization,
    PeriodKind,
    PipelineStage,
    Product,
    Quota,
    Role,
    Segment,
    User,
    Visibility,
)
from resolvers import lifecycle
from resolvers.auth import hash_password
from resolvers.organization import create_default_stages

DEMO_PASSWORD = "demo-password"
DEMO_USERS = [
    ("admin@demo.example", "Ada Admin", Role.ADMIN, None),
    ("manager@demo.example", "Max Manager", Role.SALES_MANAGER, None),
    ("seller1@demo.example", "Sam Seller", Role.SELLER, "manager@demo.example"),
    ("seller2@demo.example", "Sue Seller", Role.SELLER, "manager@demo.example"),
]
ACCOUNTS = [
    ("Acme Industries", "Manufacturing", "France", "Île-de-France", "Paris"),
    ("Globex", "Energy", "Germany", "Bavaria", "Munich"),
    ("Initech", "Software", "United States", "Texas", "Austin"),
    ("Umbrella Pharma", "Healthcare", "United Kingdom", "England", "London"),
    ("Stark Logistics", "Logistics", "Spain", "Catalonia", "Barcelona"),
    ("Wayne Foods", "Retail", "Italy", "Lombardy", "Milan"),
    ("Hooli", "Software", "United States", "California", "Palo Alto"),
    ("Vandelay Imports", "Wholesale", "United States", "New York", "New York"),
    ("Soylent Farms", "Agriculture", "Netherlands", "North Holland", "Amsterdam"),
    ("Cyberdyne", "Robotics", "Japan", "Kanto", "Tokyo"),
    ("Tyrell Bio", "Biotech", "Canada", "Ontario", "Toronto"),
    ("Oscorp Media", "Media", "Belgium", "Brussels", "Brussels"),
]
FIRST_NAMES = ["Alice", "Bruno", "Chloe", "David", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jon"]
LAST_NAMES = ["Martin", "Bernard", "Dubois", "Schmidt", "Rossi", "Smith", "Garcia", "Tanaka"]
TITLES = ["CEO", "CFO", "IT Director", "Head of Purchasing", "Operations Manager"]
SOURCES = ["Website", "Trade show", "Referral", "Cold call", "Campaign"]


PRODUCTS = [
    ("CRM Cloud seat (year)", "CRM-SEAT", "Software", 600),
    ("Onboarding package", "ONBOARD", "Services", 4_000),
    ("Premium support (year)", "SUPPORT", "Services", 2_500),
]


async def demo_exists() -> bool:
    return await User.filter(email=DEMO_USERS[0][0]).exists()


async def seed_demo(settings: Settings) -> bool:
    """Load the demo organization (its passwords hashed as `settings` say); False when it was
    there already."""
    if await demo_exists():
        return False
    rng = random.Random(7)
    password_hash = await hash_password(settings, DEMO_PASSWORD)
    async with in_transaction():
        org = await Organization.create(name="Demo Company", currency="EUR")
        stages = await create_default_stages(org)
        users: dict[str, User] = {}
        for email, name, role, manager_email in DEMO_USERS:
            users[email] = await User.create(
                organization=org,
                email=email,
                full_name=name,
                password_hash=password_hash,
                role=role,
                manager=users.get(manager_email) if manager_email else None,
            )
        sellers = [users["seller1@demo.example"], users["seller2@demo.example"]]
        everyone = list(users.values())
        open_stages = [stage for stage in stages if not (stage.is_won or stage.is_lost)]
        won_stage = next(stage for stage in stages if stage.is_won)
        now = datetime.now(UTC)
        today = now.date()
        contact_ids: list[int] = []
        for index, (name, industry, country, region, city) in enumerate(ACCOUNTS):
            owner = sellers[index % 2]
            account = await Account.create(
                organization=org,
                name=name,
                industry=industry,
                website=f"https://www.{name.split()[0].lower()}.example",
                country=country,
                region=region,
                city=city,
                owner=owner,
            )
            contacts = []
            for number in range(3):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                contacts.append(
                    await Contact.create(
                        organization=org,
                        first_name=first,
                        last_name=last,
                        email=f"{first.lower()}.{last.lower()}{index}{number}@{name.split()[0].lower()}.example",
                        phone=f"+33 1 23 45 {index:02d} {number:02d}",
                        title=TITLES[(index + number) % len(TITLES)],
                        account=account,
                        owner=owner,
                    )
                )
            # A fourth of the accounts are clients already (a deal won last month); every
            # contact's lifecycle stage then follows from the facts, as it does in use.
            won = index % 4 == 3
            stage: PipelineStage = won_stage if won else rng.choice(open_stages)
            opportunity = await Opportunity.create(
                organization=org,
                name=f"{name}: {rng.choice(['renewal', 'expansion', 'new platform', 'pilot'])}",
                account=account,
                amount_cents=rng.randrange(5_000, 250_000) * 100,
                currency="EUR",
                stage=stage,
                probability=stage.probability,
                forecast_category=stage.forecast_category,
                expected_close_date=today + timedelta(days=rng.randrange(10, 180)),
                contact=contacts[0],
                owner=owner,
                visibility=Visibility.PRIVATE if index % 5 == 4 else Visibility.ORGANIZATION,
                status=OpportunityStatus.WON if won else OpportunityStatus.OPEN,
                closed_at=now - timedelta(days=30) if won else None,
            )
            for contact, label in zip(contacts[1:], ["CFO", "IT Director"], strict=True):
                await OpportunityParticipant.create(record=opportunity, contact=contact, role=label)
            for follower in rng.sample(everyone, 2):
                await OpportunityFollower.create(record=opportunity, user=follower)
            lead = await Lead.create(
                organization=org,
                title=f"{name}: {rng.choice(['inbound request', 'event contact', 'referral'])}",
                source=rng.choice(SOURCES),
                status=rng.choice([LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.QUALIFIED]),
                estimated_amount_cents=rng.randrange(1_000, 50_000) * 100,
                currency="EUR",
                account=account,
                contact=contacts[1],
                owner=owner,
            )
            await LeadParticipant.create(record=lead, contact=contacts[2], role="Sponsor")
            contact_ids += [contact.id for contact in contacts]
            await LeadFollower.create(record=lead, user=users["manager@demo.example"])
        await lifecycle.settle(contact_ids)
        for name, code, category, price in PRODUCTS:
            await Product.create(
                organization=org,
                name=name,
                code=code,
                category=category,
                unit_price_cents=price * 100,
                currency="EUR",
            )
        segment = await Segment.create(
            organization=org,
            name="Software companies, or anyone in France",
            conditions={
                "any": [{"industries": ["Software"]}, {"countries": ["France"]}],
                "hasEmail": True,
            },
            owner=users["manager@demo.example"],
        )
        await Campaign.create(
            organization=org,
            name="Spring product update",
            channel=CampaignChannel.EMAIL,
            segment=segment,
            budget_cents=5_000_00,
            owner=users["manager@demo.example"],
            subject_template="What is new for {{account.name}}",
            body_template="Dear {{contact.first_name}},\n\nHere is what is new this spring."
            "\n\n{{sender.full_name}}",
        )
        quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        for seller in sellers:
            await Quota.create(
                organization=org,
                user=seller,
                period_kind=PeriodKind.QUARTER,
                period_start=quarter_start,
                amount_cents=400_000_00,
                set_by=users["manager@demo.example"],
            )
    return True
