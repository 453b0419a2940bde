CREATE TABLE migrate_items_postgres (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL);
