"""The policy two guests need to grant to each other (guests/gntv2, gntpt)."""


def mutual_grants(labels):
    """TOML for labels {name: why}: every pair may map and copy the other's grants."""
    names = list(labels)
    text = "version = 1\n[labels]\n" + "".join(f'{n} = "{why}"\n' for n, why in labels.items())
    for x in names:
        for y in names:
            if x != y:
                text += (f'\n[[allow]]\nfrom = "{x}"\nto = "{y}"\n'
                         'paths = ["grant_map", "grant_copy"]\naccess = "readwrite"\n')
    return text
