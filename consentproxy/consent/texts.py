"""Default labels and descriptions of the consent categories, in the bundled languages.

A site may override any of them per language in its configuration. Only
cookies that are strictly necessary (the consent cookie included) may be
called necessary (EDPB / CNIL guidance).
"""

from __future__ import annotations

DEFAULT_LABELS: dict[str, dict[str, str]] = {
    "necessary": {"nl": "Noodzakelijk", "en": "Necessary", "de": "Notwendig", "fr": "Nécessaires"},
    "preferences": {"nl": "Voorkeuren", "en": "Preferences", "de": "Präferenzen", "fr": "Préférences"},
    "statistics": {"nl": "Statistieken", "en": "Statistics", "de": "Statistiken", "fr": "Statistiques"},
    "marketing": {"nl": "Marketing", "en": "Marketing", "de": "Marketing", "fr": "Marketing"},
}

DEFAULT_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "necessary": {
        "nl": "Nodig om de website te laten werken en uw keuze te onthouden. Deze staan altijd aan.",
        "en": "Needed for the website to work and to remember your choice. These are always on.",
        "de": "Erforderlich, damit die Website funktioniert und Ihre Auswahl gespeichert wird. Immer aktiv.",
        "fr": "Nécessaires au fonctionnement du site et à la mémorisation de votre choix. Toujours actifs.",
    },
    "preferences": {
        "nl": "Onthouden uw instellingen, zoals taal of regio, voor een volgend bezoek.",
        "en": "Remember your settings, such as language or region, for your next visit.",
        "de": "Speichern Ihre Einstellungen, etwa Sprache oder Region, für Ihren nächsten Besuch.",
        "fr": "Mémorisent vos réglages, comme la langue ou la région, pour votre prochaine visite.",
    },
    "statistics": {
        "nl": "Helpen ons te begrijpen hoe bezoekers de website gebruiken, zodat we die kunnen verbeteren.",
        "en": "Help us understand how visitors use the website, so that we can improve it.",
        "de": "Helfen uns zu verstehen, wie Besucher die Website nutzen, damit wir sie verbessern können.",
        "fr": "Nous aident à comprendre comment les visiteurs utilisent le site, afin de l'améliorer.",
    },
    "marketing": {
        "nl": "Worden gebruikt om advertenties te tonen en te meten, ook op andere websites.",
        "en": "Used to show and measure advertising, also on other websites.",
        "de": "Werden verwendet, um Werbung anzuzeigen und zu messen, auch auf anderen Websites.",
        "fr": "Servent à afficher et mesurer de la publicité, y compris sur d'autres sites.",
    },
}
