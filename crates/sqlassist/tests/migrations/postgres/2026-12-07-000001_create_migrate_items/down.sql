DROP TABLE migrate_items_postgres;
