from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("storage", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parts_delivered",
            field=models.PositiveSmallIntegerField(
                default=0,
                help_text="Of a reply the platform takes in several messages, "
                "how many went out already.",
            ),
        ),
    ]
